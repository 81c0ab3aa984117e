# GPU machine, round 7 (suite 2026.11.4): round 6's Pi0.5 without the state in its prompt ("nostate") trained on,
# alone on the GPU (round 6 shared it between two models), on the same recording (the same recorders and seeds:
# the expert's episodes are the same). The round-6 checkpoint travels in the training call (the package calls are
# full up to the 64 MiB limit): carry [".gl", ".device/r6"]. The next rounds run it again from the previous
# round's checkpoint: INIT=.device/r7/nostate BATCH=512 (carry [".gl", ".device/r7"]); LR, MINUTES likewise.
#   install   unpack one call's packages: once per .device/callK but the last (pack_device.sh says how many)
#   record    bench doctor, then the expert, GPU rendering, as round6.sh record_train: three PickCube recorders (seeds 0, 1, 2) and
#             PushCube (seed 0), stopped by SIGINT at REC_S
#   train     nostate from .device/r6/nostate for MINUTES in the background; waits up to the call's limit
#   wait      waits for the training (up to the call's limit) and hands back the log
#   evaluate  waits for the end of the training; hands back the checkpoint, then (unless EVAL=0) the first 32
#             recorded episodes of each seed-0 recording (target (a)), both tasks side by side
source benchmarks/trained/device_env.sh
source benchmarks/trained/rounds.sh
P=benchmarks/trained/presets; TOK=benchmarks/trained/checkpoints/tokenizer.model
DATA=${DATA:-"$WORK/pick7-0 $WORK/pick7-1 $WORK/pick7-2 $WORK/push7-0"}  # the recordings it trains on
case "$1" in
  install) nvidia-smi --query-gpu=name,memory.used --format=csv; python3 -c "import lerobot, torch; print('ok')" ;;
  record)
    COLUMNS=150 $BENCH doctor || true  # its "Speed bench measured" row knows this GPU by torch's name for it
    record_experts 7 200 ;;
  train)
    rm -rf $WORK/init && cp -r ${INIT:-.device/r6/nostate} $WORK/init
    setsid nohup python3 scripts/train_small_pi.py train --dataset $DATA --tokenizer $TOK --model pi05 \
      --no-discrete-state-input --max-len 24 --init $WORK/init --lr ${LR:-1.5e-4} --minutes ${MINUTES:-19} \
      --steps 400000 --batch-size ${BATCH:-256} --log-every 1000 --out $WORK/ckpt7 > $WORK/train7.log 2>&1 < /dev/null &
    await_training 20 $WORK/train7.log ;;
  wait) await_training 15 $WORK/train7.log ;;
  evaluate)
    await_training 150 $WORK/train7.log
    tar -cf $OUT/ckpt7-nostate.tar -C $WORK ckpt7
    [ "${EVAL:-1}" = 1 ] || exit 0  # EVAL=0: the checkpoint only (a machine whose training the next one goes on with)
    for task in PickCube-v1 PushCube-v1; do
      data=$WORK/pick7-0; [ $task = PushCube-v1 ] && data=$WORK/push7-0
      $BENCH run --num-envs 8 --output $WORK/results --run-id a7-$task --label a7-nostate \
        --policy $P/pi05-small-nostate.toml --checkpoint $WORK/ckpt7 --tokenizer $TOK --episodes-from $data \
        --tasks $task --episodes 32 > $WORK/eval-$task.log 2>&1 &
    done
    wait
    tail -n 4 $WORK/eval-*.log
    tar -czf $OUT/results7.tar.gz -C $WORK results pick7-0/meta push7-0/meta ;;
esac
