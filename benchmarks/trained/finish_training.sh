# GPU machine, third call: try openpi's JAX Pi0/Pi0.5 on this machine's jax (timeboxed, while training runs), wait
# for both trainings and the held-out recording, and hand back the checkpoints, tokenizer, logs and the datasets'
# metadata through $OUT.
source benchmarks/trained/device_env.sh
timeout 200 python3 benchmarks/trained/openpi_on_device.py > $OUT/openpi-on-device.log 2>&1
for i in $(seq 60); do pgrep -f "train_small_pi.py train|bench.cli record" >/dev/null || break; sleep 5; done
tail -n 4 $WORK/train-*.log; tail -c 400 $WORK/heldout.log
cp $WORK/train-*.log $OUT/
tar -cf $OUT/checkpoints.tar -C $WORK ckpt tokenizer
tar -czf $OUT/dataset-meta.tar.gz -C $WORK train/meta heldout/meta
ls -la $OUT
