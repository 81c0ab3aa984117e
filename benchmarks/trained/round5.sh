# GPU machine, round 5 (suite 2026.11.3): Pi0.5 small from scratch on ~3x round 4's PickCube data, batch 512, state
# noise of 2 bins, side by side with and without ordinal state-bin embeddings (`train --ordinal-bins`: the 256 bin
# tokens' embeddings start as Fourier features of their value, so neighbouring bins start alike; round 4 found that
# from random embeddings Pi0.5 learned its training states' exact bin tokens by heart).
#   ord    --ordinal-bins --state-noise 2
#   plain  --state-noise 2 (the control)
# One call per mode, chained while the machine stays warm (each call first sources device_env.sh); the training runs
# in its own process session across the calls record_train -> wait -> evaluate:
#   install       unpack one call's packages: once per .device/callK but the last (pack_device.sh says how many)
#   record_train  the expert, GPU rendering: three PickCube recorders (seeds 0, 1, 2) and one PushCube (seed 0) side by
#                 side, each stopped by SIGINT at REC_S (bench record keeps the finished episodes); then both variants
#                 start training for MINUTES (default 16) in the background
#   wait          waits for the training (up to the call's limit) and hands back the logs
#   evaluate      waits for the end of the training; both variants on the first 32 recorded episodes of the seed-0
#                 recordings (target (a)); hands back results, checkpoints and the recordings' meta
source benchmarks/trained/device_env.sh
source benchmarks/trained/rounds.sh
P=benchmarks/trained/presets; TOK=benchmarks/trained/checkpoints/tokenizer.model
DATA="$WORK/pick5-0 $WORK/pick5-1 $WORK/pick5-2 $WORK/push5-0"
declare -A FLAGS=([ord]="--ordinal-bins" [plain]="")
train() {  # variant, minutes
  setsid nohup python3 scripts/train_small_pi.py train --dataset $DATA --tokenizer $TOK --max-len 48 --model pi05 \
    --state-noise 2 ${FLAGS[$1]} --lr 5e-4 --minutes $2 --steps 200000 --batch-size 512 --out $WORK/ckpt5/$1 \
    > $WORK/train5-$1.log 2>&1 < /dev/null &
}
case "$1" in
  install) nvidia-smi --query-gpu=name,memory.used --format=csv; python3 -c "import lerobot, torch; print('ok')" ;;
  record_train)
    record_experts 5 330
    train ord ${MINUTES:-16}
    train plain ${MINUTES:-16}
    await_training 20 $WORK/train5-ord.log $WORK/train5-plain.log ;;
  wait) await_training 15 $WORK/train5-ord.log $WORK/train5-plain.log ;;
  evaluate)
    await_training 240 $WORK/train5-ord.log $WORK/train5-plain.log
    for v in ord plain; do
      for task in PickCube-v1 PushCube-v1; do
        data=$WORK/pick5-0; [ $task = PushCube-v1 ] && data=$WORK/push5-0
        $BENCH run --num-envs 16 --output $WORK/results --run-id a5-$v-$task --label a5-$v --policy $P/pi05-small.toml \
          --checkpoint $WORK/ckpt5/$v --tokenizer $TOK --episodes-from $data --tasks $task --episodes 32 2>&1 | tail -n 3
      done
    done
    tar -czf $OUT/results5.tar.gz -C $WORK results pick5-0/meta pick5-1/meta pick5-2/meta push5-0/meta
    for v in ord plain; do tar -cf $OUT/ckpt5-$v.tar -C $WORK/ckpt5 $v; done ;;
esac
