# GPU machine, round 2: both small models go on from the committed checkpoints (their weights and normalization
# statistics) on round 1's lavapipe-rendered pack (.device/c4), plus record_more.sh's GPU-rendered recording when it
# finished (it did not in the measured round 2), learning rate annealed to 0 by the time limit; in their own process
# sessions; waits for them and hands back the checkpoints.
source benchmarks/trained/device_env.sh
MINUTES=${1:-7.5}
[ -d /opt/c4 ] || cp -r .device/c4 /opt/c4
for i in $(seq 120); do pgrep -f "bench.cli record" >/dev/null || break; sleep 5; done
tail -c 400 $WORK/record.log
DATA=/opt/c4/pack-lavapipe; [ -f $WORK/train-nv/meta/info.json ] && DATA="$WORK/train-nv $DATA"
C=benchmarks/trained/checkpoints
for m in pi05 pi0; do
  [ -f $WORK/ckpt2/$m/model.safetensors ] || setsid nohup python3 scripts/train_small_pi.py train \
    --dataset $DATA --init $C/$m-small --tokenizer $C/tokenizer.model --model $m \
    --out $WORK/ckpt2/$m --steps 100000 --batch-size 128 --lr 1.5e-4 --minutes $MINUTES > $WORK/train2-$m.log 2>&1 < /dev/null &
done
sleep 5
while [ $SECONDS -lt 560 ] && pgrep -f "train_small_pi.py train" >/dev/null; do sleep 5; done
tail -n 4 $WORK/train2-*.log
cp $WORK/train2-*.log $OUT/ 2>/dev/null; [ -d $WORK/ckpt2 ] && tar -cf $OUT/ckpt2.tar -C $WORK ckpt2
[ -d $WORK/train-nv/meta ] && tar -czf $OUT/train-nv-meta.tar.gz -C $WORK train-nv/meta
[ -d /opt/c3 ] || { mkdir -p /opt/c3 && cp -r .device/c3/train /opt/c3/; }
