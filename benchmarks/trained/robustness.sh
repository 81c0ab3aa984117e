# GPU machine: the committed small Pi0 and Pi0.5 on PushCube-v1 and every one of its robustness variants, 50
# evaluation episodes each (docs/robustness.md). Chained calls while the machine stays warm (each sources
# device_env.sh; the packages come in parts, .device/call1, .device/call2, ...: pack_device.sh says how many):
#   install   carry [".gl", ".device/callK"], once per call folder but the last
#   run       carry [".gl", ".device/call<last>"]: both models side by side, each stopped by SIGINT at RUN_S (bench
#             keeps the finished episodes); hands back the two runs
source benchmarks/trained/device_env.sh
T=benchmarks/trained
case "$1" in
  install) nvidia-smi --query-gpu=name,memory.used --format=csv ;;
  run)
    TASKS=$(python3 -c "from bench.tasks import load_suite; print(','.join(t for t in load_suite().suites['robustness'] if t.startswith('PushCube-v1')))")
    for m in pi0 pi05; do
      timeout -s INT ${RUN_S:-500} $BENCH run --policy $T/presets/$m-small.toml --checkpoint $T/checkpoints/$m-small \
        --tokenizer $T/checkpoints/tokenizer.model --tasks $TASKS --episodes 50 --num-envs 16 --output $WORK/rob \
        --run-id $m-pushcube > $WORK/rob-$m.log 2>&1 &
    done
    wait
    tail -n 22 $WORK/rob-*.log
    tar -czf $OUT/rob.tar.gz -C $WORK rob ;;
esac
