# GPU machine, round 3 (suite 2026.11.2: D415 hidden): does Pi0.5 small learn PickCube when its actions are
# normalized by mean/std instead of lerobot's default quantiles? One call per mode, chained while the machine is warm.
#   record_train  the expert, GPU rendering: PickCube then PushCube (recording seeds, seed 0: round 1's first
#             episodes), each stopped by SIGINT at its time limit (bench record keeps the finished episodes); then two
#             Pi0.5 from the round-2 checkpoint on both datasets, side by side, for what is left of the call: actions
#             normalized by quantiles (as rounds 1-2: the control) and by mean/std; hands back both checkpoints and
#             the datasets' metadata (for --episodes-from)
#   evaluate  both on the first 32 recorded episodes of each task (a); the better on PickCube then on 50 held-out
#             episodes per task (d)
source benchmarks/trained/device_env.sh
C=benchmarks/trained/checkpoints; P=benchmarks/trained/presets; TOK=$C/tokenizer.model
rec="$BENCH record --policy expert --layout pi05 --end-after-success 10 --format v2.1 --no-video --num-envs 16 --seed 0"
run() { local label=$1; shift; $BENCH run --num-envs 16 --output $WORK/results --run-id $label --label $label "$@" 2>&1 | tail -n 7; }
case "$1" in
  record_train)  # one call: record (PICK_S, PUSH_S seconds), then train both variants in what is left of 570 s
    timeout -s INT ${PICK_S:-200} $rec --tasks PickCube-v1 --episodes 200 --output $WORK/pick3 > $WORK/record-pick.log 2>&1
    timeout -s INT ${PUSH_S:-80} $rec --tasks PushCube-v1 --episodes 100 --output $WORK/push3 > $WORK/record-push.log 2>&1
    tail -n 3 $WORK/record-*.log
    MINUTES=$(python3 -c "print(max(1.0, (570 - $SECONDS - 45) / 60))")
    for v in quantiles mean_std; do
      setsid nohup python3 scripts/train_small_pi.py train --dataset $WORK/pick3 $WORK/push3 --init $C/pi05-small \
        --tokenizer $TOK --model pi05 --action-norm $v --out $WORK/ckpt3/$v --steps 100000 --batch-size 128 \
        --lr 1.5e-4 --minutes $MINUTES > $WORK/train3-$v.log 2>&1 < /dev/null &
    done
    sleep 5
    while [ $SECONDS -lt 585 ] && pgrep -f "[t]rain_small_pi.py train" > /dev/null; do sleep 3; done
    tail -n 3 $WORK/train3-*.log
    tar -czf $OUT/meta3.tar.gz -C $WORK pick3/meta push3/meta
    for v in quantiles mean_std; do tar -cf $OUT/ckpt3-$v.tar -C $WORK/ckpt3 $v; done
    cp $WORK/train3-*.log $WORK/record-*.log $OUT/ ;;
  evaluate)
    for v in quantiles mean_std; do
      ck="--policy $P/pi05-small.toml --checkpoint $WORK/ckpt3/$v --tokenizer $TOK"
      run a3-$v $ck --episodes-from $WORK/pick3 --tasks PickCube-v1 --episodes 32
      run a3-push-$v $ck --episodes-from $WORK/push3 --tasks PushCube-v1 --episodes 32
    done
    best=$(python3 -c "
from bench.results import read_episodes
print(max(['quantiles', 'mean_std'], key=lambda v: read_episodes('$WORK/results/a3-' + v).success_once.sum()))")
    echo "better on PickCube: $best"
    run d3-$best --policy $P/pi05-small.toml --checkpoint $WORK/ckpt3/$best --tokenizer $TOK \
      --tasks PushCube-v1,PickCube-v1 --episodes 50
    tar -czf $OUT/results3.tar.gz -C $WORK results ;;
esac
