# Sourced by the GPU-machine round scripts (after device_env.sh): what rounds 5-7 share.
# record_experts TAG SECONDS: the expert, GPU rendering, four recorders side by side (PickCube seeds 0, 1, 2 and
#   PushCube seed 0, 8 env slots each) into $WORK/pickTAG-S and $WORK/pushTAG-0, each stopped by SIGINT after
#   REC_S (default SECONDS); bench record keeps the finished episodes. PICK_SEEDS (default "0 1 2") and PICK_EPISODES
#   (default 400) narrow the PickCube recorders.
# await_training LEFT LOG...: waits until no training runs or the call has LEFT seconds of its 600, then shows and
#   hands back the logs.
record_experts() {
  local rec="$BENCH record --policy expert --layout pi05 --end-after-success 10 --format v2.1 --no-video --num-envs 8"
  for s in ${PICK_SEEDS:-0 1 2}; do
    timeout -s INT ${REC_S:-$2} $rec --seed $s --tasks PickCube-v1 --episodes ${PICK_EPISODES:-400} --output $WORK/pick$1-$s \
      > $WORK/record-pick-$s.log 2>&1 &
  done
  timeout -s INT ${REC_S:-$2} $rec --seed 0 --tasks PushCube-v1 --episodes 100 --output $WORK/push$1-0 \
    > $WORK/record-push-0.log 2>&1 &
  wait
  for f in $WORK/record-*.log; do echo "$f"; grep -E "steps/s|saved" "$f" | tail -n 2; done
  cp $WORK/record-*.log $OUT/
}
await_training() {
  local left=$1; shift
  sleep 5
  while [ $SECONDS -lt $((600 - left)) ] && pgrep -f "[t]rain_small_pi.py train" > /dev/null; do sleep 3; done
  for log in "$@"; do tail -n 3 "$log"; cp "$log" $OUT/; done
}
