"""A finished v2.1 dataset -> LeRobot v3.0, with lerobot 0.6.1's own converter functions
(lerobot/scripts/convert_dataset_v21_to_v30.py), into a temporary folder that then replaces the v2.1 one: a
recording killed before or during the conversion still leaves the valid v2.1 dataset, which --resume converts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.datasets.v21 import BENCH_EPISODES

BENCH_FILES = ("meta/bench.json", BENCH_EPISODES, "norm_stats.json")  # bench's own files, carried over as they are


def to_v30(root: Path) -> None:
    """Converts the v2.1 dataset at `root` in place (lerobot's converter works offline on a local folder: its
    functions read `root` and write a new folder; only its `convert_dataset` entry point talks to the Hub)."""
    from lerobot.datasets.utils import DEFAULT_DATA_FILE_SIZE_IN_MB, DEFAULT_VIDEO_FILE_SIZE_IN_MB
    from lerobot.scripts import convert_dataset_v21_to_v30 as lerobot_convert

    new = root.with_name(f".{root.name}.v30.tmp")
    old = root.with_name(f".{root.name}.v21.old")
    shutil.rmtree(new, ignore_errors=True)
    lerobot_convert.validate_local_dataset_version(root)
    lerobot_convert.convert_info(root, new, DEFAULT_DATA_FILE_SIZE_IN_MB, DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    lerobot_convert.convert_tasks(root, new)
    episodes = lerobot_convert.convert_data(root, new, DEFAULT_DATA_FILE_SIZE_IN_MB)
    videos = lerobot_convert.convert_videos(root, new, DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    lerobot_convert.convert_episodes_metadata(root, new, episodes, videos)
    for name in BENCH_FILES:
        if (root / name).is_file():
            (new / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, new / name)
    shutil.rmtree(old, ignore_errors=True)
    root.rename(old)  # from here until the next rename the dataset is at `old`: resume_pending() finds it
    new.rename(root)
    shutil.rmtree(old)


def resume_pending(root: Path) -> None:
    """Puts back the v2.1 folder if a kill fell between the two renames of `to_v30`."""
    old = root.with_name(f".{root.name}.v21.old")
    if old.is_dir() and not root.exists():
        old.rename(root)
    shutil.rmtree(root.with_name(f".{root.name}.v30.tmp"), ignore_errors=True)
