# GPU machine, round 2, first call: record the expert again with GPU rendering (the same command and seeds as
# round 1, PickCube first: it is the task the small models lag on) in its own process session; SIGINT after
# ${1:-480} s leaves a valid dataset of the finished episodes (bench record's crash safety).
source benchmarks/trained/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
setsid nohup timeout -s INT ${1:-480} $BENCH record --policy expert --layout pi05 --end-after-success 10 --format v2.1 \
  --no-video --num-envs 16 --tasks PickCube-v1,PushCube-v1 --episodes 100 --seed 0 --output $WORK/train-nv \
  > $WORK/record.log 2>&1 < /dev/null &
sleep 40; tail -c 600 $WORK/record.log
