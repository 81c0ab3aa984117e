# GPU machine, third call: try openpi's JAX Pi0/Pi0.5 on this machine's jax (timeboxed, while training runs), wait
# for both trainings, and hand back the checkpoints, tokenizer, logs and the datasets' metadata through $OUT.
source benchmarks/trained/device_env.sh
timeout 240 python3 benchmarks/trained/openpi_on_device.py > $OUT/openpi-on-device.log 2>&1
while pgrep -f "train_small_pi.py train" >/dev/null; do sleep 10; done
tail -4 $WORK/train-*.log
cp $WORK/train-*.log $OUT/
tar -cf $OUT/checkpoints.tar -C $WORK ckpt tokenizer
tar -czf $OUT/dataset-meta.tar.gz -C $WORK train/meta heldout/meta
ls -la $OUT
