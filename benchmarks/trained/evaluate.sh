# GPU machine: the evaluations of docs/trained-policies.md. `baselines`: the expert and random on (a) the training
# dataset's recorded episodes and (d) held-out evaluation episodes; `models`: both small models on the same, then
# (b) the Pi0.5 sensitivity variants. Results in $WORK/results/<label>.
source benchmarks/trained/device_env.sh
T=/opt/c3; P=benchmarks/trained/presets; TOK=$T/tokenizer/small.model
run() { local label=$1; shift; $BENCH run --num-envs 16 --output $WORK/results --run-id $label --label $label "$@" 2>&1 | tail -n 9; }
recorded="--episodes-from $T/train --tasks PushCube-v1,PickCube-v1 --episodes 32"
heldout="--tasks PushCube-v1,PickCube-v1 --episodes 50"
if [ "$1" = baselines ]; then
  for p in expert random; do run a-$p --policy $p $recorded; run d-$p --policy $p $heldout; done
else
  for m in pi05 pi0; do
    ck="--policy $P/$m-small.toml --checkpoint $WORK/ckpt/$m --tokenizer $TOK"
    run a-$m $ck $recorded; run d-$m $ck $heldout
  done
  ck="--checkpoint $WORK/ckpt/pi05 --tokenizer $TOK --tasks PushCube-v1 --episodes 50"
  run b-pi05-swapped-cameras --policy $P/pi05-small-swapped-cameras.toml $ck
  run b-pi05-wrong-layout --policy $P/pi05-small-wrong-layout.toml $ck
  run b-pi05-wrong-norm-stats --policy $P/pi05-small.toml --norm-stats $P/norm_stats_pickcube_only.json $ck
  run b-pi05-replan-10 --policy $P/pi05-small.toml --replan-steps 10 $ck
fi
echo "evaluate $1: done"
