# GPU machine, second call: record the training and held-out datasets (expert, GPU rendering), train the tokenizer,
# then start training Pi0.5 and Pi0 side by side in their own process sessions (they outlive this call; logs in
# $WORK). Usage: bash benchmarks/trained/record_and_train.sh MINUTES
source benchmarks/trained/device_env.sh
MINUTES=${1:-8.5}
$BENCH doctor | tail -12
rec="$BENCH record --policy expert --layout pi05 --end-after-success 10 --format v2.1 --no-video --num-envs 16"
[ -f $WORK/train/meta/info.json ] || $rec --tasks PushCube-v1,PickCube-v1 --episodes 100 --seed 0 --output $WORK/train
[ -f $WORK/heldout/meta/info.json ] || $rec --tasks PushCube-v1,PickCube-v1 --episodes 30 --seed 1 --output $WORK/heldout
python3 scripts/train_small_pi.py tokenizer --dataset $WORK/train --out $WORK/tokenizer
for m in pi05 pi0; do
  setsid nohup python3 scripts/train_small_pi.py train --dataset $WORK/train --tokenizer $WORK/tokenizer/small.model \
    --model $m --out $WORK/ckpt/$m --steps 20000 --batch-size 128 --minutes $MINUTES > $WORK/train-$m.log 2>&1 < /dev/null &
done
sleep 45; tail -n 3 $WORK/train-*.log; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
