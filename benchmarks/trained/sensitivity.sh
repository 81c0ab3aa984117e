# Any machine (docs/trained-policies.md (b)): the committed Pi0.5 small without the state in its prompt on 50
# held-out PushCube episodes, with the correct preset and with each wrong setting, `bench compare` of each against
# the correct run, and `bench check` of each preset against a held-out recording (HELDOUT: a `bench record
# --layout pi05 --tasks PushCube-v1,PickCube-v1` dataset of episodes it never trained on).
#   bash benchmarks/trained/sensitivity.sh OUTPUT HELDOUT      (NUM_ENVS: env slots, default 2)
# A run already in OUTPUT is kept (the correct run is the (d) run of the same seeds).
set -u
out=$1; heldout=$2
T=benchmarks/trained; P=$T/presets; M=pi05-small-nostate
ck="--checkpoint $T/checkpoints/$M --tokenizer $T/checkpoints/tokenizer.model"
# id, whether bench check can hold it against the dataset (a replanning interval is not a dataset property), settings
variants=(
  "correct check --policy $P/$M.toml"
  "swapped-cameras check --policy $P/$M-swapped-cameras.toml"
  "wrong-layout check --policy $P/$M-wrong-layout.toml"
  "identity-norm-stats check --policy $P/$M.toml --norm-stats $P/norm_stats_identity.json"
  "pickcube-norm-stats check --policy $P/$M.toml --norm-stats $P/norm_stats_pickcube_only.json"
  "replan-10 run-only --policy $P/$M.toml --replan-steps 10"
)
for v in "${variants[@]}"; do
  set -- $v; id=$1; shift 2
  [ -f "$out/$id/episodes.jsonl" ] || bench run $ck --tasks PushCube-v1 --episodes 50 --num-envs ${NUM_ENVS:-2} \
    --output "$out" --run-id $id --label $id "$@" 2>&1 | grep -E "│ PushCube|results"
done
for v in "${variants[@]:1}"; do
  set -- $v
  echo "== bench compare correct $1"
  bench compare "$out/correct" "$out/$1" --allow-mismatch 2>&1 | grep -iE "PushCube|verdict|better|worse|difference"
done
for v in "${variants[@]}"; do
  set -- $v; id=$1; [ $2 = check ] || continue; shift 2
  bench check $ck --dataset "$heldout" --tasks PushCube-v1,PickCube-v1 --json "$out/check-$id.json" "$@" \
    > "$out/check-$id.log" 2>&1
  echo "bench check $id: exit $?"
done
