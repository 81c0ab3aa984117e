# GPU machine: the README's full-size recipe, offline. lerobot-train (lerobot 0.6.1) trains a Pi0.5 of full size
# (PaliGemma gemma_2b + gemma_300m action expert) from random weights on a bench-recorded LeRobot v3.0 dataset for
# a few optimizer steps, with a stand-in for google/paligemma-3b-pt-224's tokenizer in the Hugging Face cache; then
# `bench run` loads the saved checkpoint. Dataset: .device/c6/ms-tiny-v3 (`bench record --tasks
# PushCube-v1,PickCube-v1 --episodes 2 --layout pi05 --end-after-success 10`, lavapipe, 2-core machine).
source benchmarks/trained/device_env.sh
STEPS=${1:-20}
DATA=/opt/c6/ms-tiny-v3; [ -d $DATA ] || { mkdir -p /opt/c6 && cp -r .device/c6/ms-tiny-v3 $DATA; }
export HF_HOME=$WORK/hf
python3 scripts/train_small_pi.py paligemma-standin --dataset $DATA --hf-home $HF_HOME
rm -rf $WORK/lerobot-full
(while sleep 2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done > $WORK/gpu-mem.log) &
MON=$!
start=$(date +%s)
python3 -m lerobot.scripts.lerobot_train --dataset.repo_id=local/ms-tiny-v3 --dataset.root=$DATA --policy.type=pi05 \
  --policy.push_to_hub=false --policy.device=cuda --policy.dtype=bfloat16 --policy.gradient_checkpointing=true \
  --batch_size=8 --steps=$STEPS --save_freq=$STEPS --log_freq=5 --num_workers=4 --wandb.enable=false \
  --output_dir=$WORK/lerobot-full > $WORK/lerobot-full.log 2>&1
echo "lerobot-train: exit $? after $(( $(date +%s) - start )) s; peak GPU memory $(sort -n $WORK/gpu-mem.log | tail -1) MiB"
kill $MON
grep -E "num_learnable|num_total|step:|Checkpoint|Error|error" $WORK/lerobot-full.log | cut -c1-240 | tail -n 14
CKPT=$(ls -d $WORK/lerobot-full/checkpoints/*/pretrained_model | tail -1); ls -la $CKPT
SNAP=$HF_HOME/hub/models--google--paligemma-3b-pt-224/snapshots/bench-standin
start=$(date +%s)
$BENCH run --policy pi05 --checkpoint $CKPT --tokenizer $SNAP/tokenizer.model --tasks PushCube-v1 --episodes 2 \
  --num-envs 2 --output $WORK/results --run-id lerobot-full --label lerobot-full 2>&1 | tail -n 8
echo "bench run on the full-size checkpoint: $(( $(date +%s) - start )) s"
cp $WORK/lerobot-full.log $WORK/gpu-mem.log $OUT/ 2>/dev/null; cp $CKPT/config.json $OUT/lerobot-full-config.json
