# GPU machine, lease 2: continue training both small models (from the first lease's checkpoints, carried in
# /opt/c3) on the lavapipe-rendered pack (.device/c4), in their own process sessions; then baselines.sh.
source benchmarks/trained/device_env.sh
[ -d /opt/c4 ] || cp -r .device/c4 /opt/c4
for m in pi05 pi0; do
  setsid nohup python3 scripts/train_small_pi.py train --dataset /opt/c4/pack-lavapipe --init /opt/c3/ckpt/$m \
    --tokenizer /opt/c3/tokenizer/small.model --model $m --out $WORK/ckpt/$m --steps 20000 --batch-size 128 \
    --lr 1e-4 --minutes ${1:-8} > $WORK/train-$m.log 2>&1 < /dev/null &
done
setsid nohup bash benchmarks/trained/evaluate.sh baselines > $WORK/eval-baselines.log 2>&1 < /dev/null &
sleep 60; tail -n 2 $WORK/train-*.log $WORK/eval-baselines.log
