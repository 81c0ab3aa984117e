# GPU machine, round 6 (suite 2026.11.4): does Pi0.5 small learn PickCube without the state in its prompt? Two Pi0.5
# go on from the committed round-2 checkpoint, side by side, on a new expert recording (four recorders as round 5):
#   nostate  --no-discrete-state-input: the prompt is the instruction alone, as openpi's pi05_libero trains Pi0.5
#            (evaluated with presets/pi05-small-nostate.toml)
#   noise    the state in the prompt, Gaussian noise of 2 bins on it (round 4's remedy; presets/pi05-small.toml)
# One call per mode, chained while the machine stays warm (each call first sources device_env.sh); the trainings run
# in their own process session across the calls record_train -> wait -> evaluate:
#   install       unpack one call's packages: once per .device/callK but the last (pack_device.sh says how many)
#   record_train  the expert, GPU rendering: PickCube recorders (seeds 0, 1, 2) and PushCube (seed 0) side by side,
#                 each stopped by SIGINT at REC_S (bench record keeps the finished episodes); then both variants train
#                 for MINUTES in the background
#   wait          waits for the trainings (up to the call's limit) and hands back the logs
#   evaluate      waits for the end of the trainings; both variants on the first 32 recorded episodes of the seed-0
#                 recordings (target (a)), four runs side by side; hands back results, checkpoints, recordings' meta
source benchmarks/trained/device_env.sh
source benchmarks/trained/rounds.sh
P=benchmarks/trained/presets; TOK=benchmarks/trained/checkpoints/tokenizer.model
DATA="$WORK/pick6-0 $WORK/pick6-1 $WORK/pick6-2 $WORK/push6-0"
VARIANTS="nostate noise"
declare -A FLAGS=([nostate]="--no-discrete-state-input --max-len 24" [noise]="--state-noise 2 --max-len 48")
declare -A PRESET=([nostate]=pi05-small-nostate.toml [noise]=pi05-small.toml)
train() {  # variant, minutes
  setsid nohup python3 scripts/train_small_pi.py train --dataset $DATA --tokenizer $TOK --model pi05 ${FLAGS[$1]} \
    --init benchmarks/trained/checkpoints/pi05-small --lr 2e-4 --minutes $2 --steps 200000 --batch-size 256 \
    --log-every 500 --out $WORK/ckpt6/$1 > $WORK/train6-$1.log 2>&1 < /dev/null &
}
case "$1" in
  install) nvidia-smi --query-gpu=name,memory.used --format=csv; python3 -c "import lerobot, torch; print('ok')" ;;
  record_train)
    record_experts 6 200
    for v in $VARIANTS; do train $v ${MINUTES:-16}; done
    await_training 20 $WORK/train6-*.log ;;
  wait) await_training 15 $WORK/train6-*.log ;;
  evaluate)
    await_training 200 $WORK/train6-*.log
    for v in $VARIANTS; do tar -cf $OUT/ckpt6-$v.tar -C $WORK/ckpt6 $v; done
    for v in $VARIANTS; do
      for task in PickCube-v1 PushCube-v1; do
        data=$WORK/pick6-0; [ $task = PushCube-v1 ] && data=$WORK/push6-0
        $BENCH run --num-envs 8 --output $WORK/results --run-id a6-$v-$task --label a6-$v --policy $P/${PRESET[$v]} \
          --checkpoint $WORK/ckpt6/$v --tokenizer $TOK --episodes-from $data --tasks $task --episodes 32 \
          > $WORK/eval-$v-$task.log 2>&1 &
      done
    done
    wait
    tail -n 4 $WORK/eval-*.log
    tar -czf $OUT/results6.tar.gz -C $WORK results pick6-0/meta pick6-1/meta pick6-2/meta push6-0/meta ;;
esac
