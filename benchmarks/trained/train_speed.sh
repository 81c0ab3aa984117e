# GPU machine: training throughput of Pi0.5 small (train_small_pi.py, no state in the prompt) by batch size, one
# process and two side by side, ~36 s each on a 4-episode pack (.device/speedpack/pick4: `train_small_pi.py pack`);
# one call, carry [".gl", ".device/call1", ".device/speedpack"] (needs only the policy packages).
source benchmarks/trained/device_env.sh
TOK=benchmarks/trained/checkpoints/tokenizer.model
run() {  # tag batch [extra]
  python3 scripts/train_small_pi.py train --dataset .device/speedpack/pick4 --tokenizer $TOK --model pi05 \
    --no-discrete-state-input --max-len 24 --init benchmarks/trained/checkpoints/pi05-small --minutes 0.6 \
    --steps 100000 --batch-size $2 --log-every 50 --out $WORK/speed-$1 > $WORK/speed-$1.log 2>&1
}
for b in 256 512 1024; do run b$b $b; echo "batch $b"; grep -E "^step|time limit" $WORK/speed-b$b.log | tail -n 3; done
run p1 512 & run p2 512 & wait
for t in p1 p2; do echo "two side by side, batch 512: $t"; grep -E "^step|time limit" $WORK/speed-$t.log | tail -n 2; done
