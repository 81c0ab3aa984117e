# GPU machine, round 4 (suite 2026.11.2): does Pi0.5 small learn PickCube once it cannot use its training states'
# exact bin tokens as keys? (Round 2's Pi0.5 changes its action by 0.20 RMS when the state moves half a bin; Pi0's
# by 0.008: docs/trained-policies.md, round 4.) Two variants side by side, both with Gaussian noise of 3 bins on the
# normalized state of every training sample (`--state-noise 3`):
#   digits  from scratch, with a tokenizer that splits digits as Gemma's does (`tokenizer --split-digits`), so
#           neighbouring bins share tokens
#   noise   from the round-2 checkpoint, with its tokenizer (one token per bin)
# One call per mode, chained while the machine stays warm (each call first sources device_env.sh):
#   install       unpack one call's packages: once per .device/callK but the last (pack_device.sh says how many)
#   record_train  the expert, GPU rendering, recording seeds from 0 (round 1's first episodes): PickCube then
#                 PushCube, each stopped by SIGINT at its time limit (bench record keeps the finished episodes); the
#                 digits tokenizer; both variants trained for what is left of the call
#   train_more    both variants on from their checkpoints (MINUTES each, side by side)
#   evaluate      both on the first 32 recorded episodes of each task (target (a)); hands back the checkpoints
source benchmarks/trained/device_env.sh
C=benchmarks/trained/checkpoints; P=benchmarks/trained/presets
DATA="$WORK/pick4 $WORK/push4"
declare -A TOK=([digits]=$WORK/tok4/small.model [noise]=$C/tokenizer.model)
declare -A MAXLEN=([digits]=72 [noise]=48)
train() {  # variant, init, lr, minutes
  setsid nohup python3 scripts/train_small_pi.py train --dataset $DATA --tokenizer ${TOK[$1]} --max-len ${MAXLEN[$1]} \
    --model pi05 --state-noise 3 $2 --lr $3 --minutes $4 --steps 100000 --batch-size 128 --out $WORK/ckpt4/$1-new \
    > $WORK/train4-$1.log 2>&1 < /dev/null &
}
await_training() {
  sleep 5
  while [ $SECONDS -lt 585 ] && pgrep -f "[t]rain_small_pi.py train" > /dev/null; do sleep 3; done
  for v in digits noise; do
    tail -n 2 $WORK/train4-$v.log
    [ -f $WORK/ckpt4/$v-new/model.safetensors ] && rm -rf $WORK/ckpt4/$v && mv $WORK/ckpt4/$v-new $WORK/ckpt4/$v
  done
  cp $WORK/train4-*.log $OUT/
}
case "$1" in
  install) nvidia-smi --query-gpu=name,memory.used --format=csv; python3 -c "import lerobot, torch; print('ok')" ;;
  record_train)
    rec="$BENCH record --policy expert --layout pi05 --end-after-success 10 --format v2.1 --no-video --num-envs 16 --seed 0"
    timeout -s INT ${PICK_S:-280} $rec --tasks PickCube-v1 --episodes 300 --output $WORK/pick4 > $WORK/record-pick.log 2>&1
    timeout -s INT ${PUSH_S:-80} $rec --tasks PushCube-v1 --episodes 100 --output $WORK/push4 > $WORK/record-push.log 2>&1
    tail -n 4 $WORK/record-*.log; cp $WORK/record-*.log $OUT/
    python3 scripts/train_small_pi.py tokenizer --dataset $DATA --out $WORK/tok4 --split-digits
    MINUTES=$(python3 -c "print(max(1.0, (570 - $SECONDS - 45) / 60))")
    train digits "" 3e-4 $MINUTES
    train noise "--init $C/pi05-small" 1.5e-4 $MINUTES
    await_training
    tar -czf $OUT/meta4.tar.gz -C $WORK pick4/meta push4/meta tok4 ;;
  train_more)
    train digits "--init $WORK/ckpt4/digits" 1.5e-4 ${MINUTES:-8.3}
    train noise "--init $WORK/ckpt4/noise" 1e-4 ${MINUTES:-8.3}
    await_training ;;
  evaluate)
    for v in digits noise; do
      ck="--policy $P/pi05-small.toml --checkpoint $WORK/ckpt4/$v --tokenizer ${TOK[$v]}"
      for task in PickCube-v1 PushCube-v1; do
        data=$WORK/pick4; [ $task = PushCube-v1 ] && data=$WORK/push4
        $BENCH run --num-envs 16 --output $WORK/results --run-id a4-$v-$task --label a4-$v $ck --episodes-from $data \
          --tasks $task --episodes 32 2>&1 | tail -n 4
      done
    done
    tar -czf $OUT/results4.tar.gz -C $WORK results
    for v in digits noise; do tar -cf $OUT/ckpt4-$v.tar -C $WORK/ckpt4 $v; done ;;
esac
