"""openpi TrainConfigs for a dataset that `bench record --keys openpi` wrote (LeRobot v2.1, keys image, wrist_image,
state, actions: what openpi's LIBERO data config reads unchanged). Copy into your openpi checkout or put this folder
on PYTHONPATH, then:

    bench record --policy expert --tasks all --episodes 200 --layout pi05 --keys openpi --action-horizon 10 --output ~/lerobot/ms6
    mkdir -p assets/pi05_maniskill/ms6 && cp ~/lerobot/ms6/norm_stats.json assets/pi05_maniskill/ms6/
    HF_LEROBOT_HOME=~/lerobot uv run scripts/train.py pi05_maniskill --exp-name=ms6     # in openpi, with this config
    bench run --policy pi05 --checkpoint checkpoints/pi05_maniskill/ms6/29999 --tokenizer paligemma_tokenizer.model \
        --train-config openpi_maniskill:PI05_MANISKILL --tasks all                      # .venv-openpi, examples/ on PYTHONPATH

The norm stats `bench record` writes (`norm_stats.json`, for the --action-horizon given) are what openpi's
scripts/compute_norm_stats.py computes for this config; copying them saves that step. The state is the pi05 preset's
`qpos8` layout and the actions the 7-D pd_ee_delta_pose commands: LiberoInputs/LiberoOutputs pass both through
(padding to the model's 32 dims, keeping the first 7 action dims).
"""

from openpi.models import pi0_config
from openpi.training import optimizer, weight_loaders
from openpi.training.config import DataConfig, LeRobotLiberoDataConfig, TrainConfig

REPO_ID = "ms6"  # the dataset folder's name under HF_LEROBOT_HOME


def _data(repo_id: str = REPO_ID) -> LeRobotLiberoDataConfig:
    # prompt_from_task: each frame's prompt is its LeRobot task, which bench record sets to the task's instruction
    return LeRobotLiberoDataConfig(repo_id=repo_id, base_config=DataConfig(prompt_from_task=True))


# Pi0.5 as openpi's pi05_libero trains it: horizon 10, the state not written into the prompt (discrete_state_input
# False); bench reads both from this TrainConfig (`--train-config`), since openpi checkpoints record neither.
PI05_MANISKILL = TrainConfig(
    name="pi05_maniskill",
    model=pi0_config.Pi0Config(pi05=True, action_horizon=10, discrete_state_input=False),
    data=_data(),
    batch_size=64,
    lr_schedule=optimizer.CosineDecaySchedule(warmup_steps=1_000, peak_lr=5e-5, decay_steps=30_000, decay_lr=5e-6),
    optimizer=optimizer.AdamW(clip_gradient_norm=1.0),
    ema_decay=0.999,
    weight_loader=weight_loaders.CheckpointWeightLoader("gs://openpi-assets/checkpoints/pi05_base/params"),
    num_train_steps=30_000,
)

# Pi0 (MEAN_STD normalization, the state as a continuous input), horizon 10.
PI0_MANISKILL = TrainConfig(
    name="pi0_maniskill",
    model=pi0_config.Pi0Config(action_horizon=10),
    data=_data(),
    batch_size=64,
    weight_loader=weight_loaders.CheckpointWeightLoader("gs://openpi-assets/checkpoints/pi0_base/params"),
    num_train_steps=30_000,
)
