# Any machine (docs/trained-policies.md (b)): the committed Pi0.5 small without the state in its prompt on 50
# held-out PushCube episodes, with the correct preset and with each wrong setting, `bench compare` of each against
# the correct run, and `bench check` of each preset against a held-out recording (HELDOUT: a `bench record
# --layout pi05 --tasks PushCube-v1,PickCube-v1` dataset of episodes it never trained on).
#   bash benchmarks/trained/sensitivity.sh OUTPUT HELDOUT      (NUM_ENVS: env slots, default 2)
# A run already in OUTPUT is kept (the correct run is the (d) run of the same seeds).
set -u
out=$1; heldout=$2
T=benchmarks/trained; P=$T/presets
ck="--checkpoint $T/checkpoints/pi05-small-nostate --tokenizer $T/checkpoints/tokenizer.model"
run() {
  local id=$1; shift
  [ -f "$out/$id/episodes.jsonl" ] || bench run $ck --tasks PushCube-v1 --episodes 50 --num-envs ${NUM_ENVS:-2} \
    --output "$out" --run-id $id --label $id "$@" 2>&1 | grep -E "│ PushCube|results"
}
check() {
  local id=$1; shift
  bench check $ck --dataset "$heldout" --tasks PushCube-v1,PickCube-v1 --json "$out/check-$id.json" "$@" \
    > "$out/check-$id.log" 2>&1
  echo "bench check $id: exit $?"
}
run correct --policy $P/pi05-small-nostate.toml
run swapped-cameras --policy $P/pi05-small-nostate-swapped-cameras.toml
run wrong-layout --policy $P/pi05-small-nostate-wrong-layout.toml
run identity-norm-stats --policy $P/pi05-small-nostate.toml --norm-stats $P/norm_stats_identity.json
run pickcube-norm-stats --policy $P/pi05-small-nostate.toml --norm-stats $P/norm_stats_pickcube_only.json
run replan-10 --policy $P/pi05-small-nostate.toml --replan-steps 10
for id in swapped-cameras wrong-layout identity-norm-stats pickcube-norm-stats replan-10; do
  echo "== bench compare correct $id"
  bench compare "$out/correct" "$out/$id" --allow-mismatch 2>&1 | grep -iE "PushCube|verdict|better|worse|difference"
done
check correct --policy $P/pi05-small-nostate.toml
check swapped-cameras --policy $P/pi05-small-nostate-swapped-cameras.toml
check wrong-layout --policy $P/pi05-small-nostate-wrong-layout.toml
check identity-norm-stats --policy $P/pi05-small-nostate.toml --norm-stats $P/norm_stats_identity.json
check pickcube-norm-stats --policy $P/pi05-small-nostate.toml --norm-stats $P/norm_stats_pickcube_only.json
