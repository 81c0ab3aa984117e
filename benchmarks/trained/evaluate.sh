# GPU machine: the evaluations of docs/trained-policies.md. `baselines`: the expert and random on (a) the training
# dataset's recorded episodes and (d) held-out evaluation episodes; `models`: both small models on the same;
# `sensitivity`: (b) the Pi0.5 variants. Results in $WORK/results/<label>, handed back as $OUT/results-<mode>.tar.gz.
# TRAIN: the recorded dataset whose episodes (a) replays (both rounds: /opt/c3/train, round 1's metadata carried);
# CK: the checkpoints, one folder per model named pi0 / pi05 (round 1: $WORK/ckpt; round 2: $WORK/ckpt2).
source benchmarks/trained/device_env.sh
TRAIN=${TRAIN:-/opt/c3/train}; CK=${CK:-$WORK/ckpt}; P=benchmarks/trained/presets
TOK=benchmarks/trained/checkpoints/tokenizer.model
run() { local label=$1; shift; $BENCH run --num-envs 16 --output $WORK/results --run-id $label --label $label "$@" 2>&1 | tail -n 9; }
recorded="--episodes-from $TRAIN --tasks PushCube-v1,PickCube-v1 --episodes 32"
heldout="--tasks PushCube-v1,PickCube-v1 --episodes 50"
case "$1" in
  baselines) for p in expert random; do run a-$p --policy $p $recorded; run d-$p --policy $p $heldout; done ;;
  models)
    for m in pi05 pi0; do
      ck="--policy $P/$m-small.toml --checkpoint $CK/$m --tokenizer $TOK"
      run a-$m $ck $recorded; run d-$m $ck $heldout
    done ;;
  sensitivity)
    ck="--checkpoint $CK/pi05 --tokenizer $TOK --tasks PushCube-v1 --episodes 50"
    run b-pi05-swapped-cameras --policy $P/pi05-small-swapped-cameras.toml $ck
    run b-pi05-wrong-layout --policy $P/pi05-small-wrong-layout.toml $ck
    run b-pi05-identity-norm-stats --policy $P/pi05-small.toml --norm-stats $P/norm_stats_identity.json $ck
    run b-pi05-wrong-norm-stats --policy $P/pi05-small.toml --norm-stats $P/norm_stats_pickcube_only.json $ck
    run b-pi05-replan-10 --policy $P/pi05-small.toml --replan-steps 10 $ck ;;
esac
tar -czf $OUT/results-$1.tar.gz -C $WORK results
echo "evaluate $1: done"
