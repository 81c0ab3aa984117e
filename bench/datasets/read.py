"""The one reader of LeRobot datasets for the rest of bench (`bench check`, training scripts, `bench run
--episodes-from`): v2.1 through pyarrow and PyAV (lerobot 0.6.1 refuses v2.1), v3.0 through lerobot 0.6.1's own
`LeRobotDataset`. Works for datasets bench did not record too (then `bench`, `keys` and the bench episode fields
are absent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.datasets.v21 import BENCH_EPISODES, EPISODES, INFO, TASKS, read_jsonl
from bench.errors import BenchError
from bench.tasks import Episode

BENCH_JSON = "meta/bench.json"
NORM_STATS = "norm_stats.json"
LOCAL_REPO_ID = "bench/local"  # LeRobotDataset wants a repo id; with a local root it is only a name


def _images_uint8(value) -> np.ndarray:
    """LeRobot's float [C, H, W] in [0, 1] -> uint8 [H, W, C]."""
    array = np.asarray(value, np.float32)
    return np.clip(np.round(array.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def decode_video(path: Path) -> np.ndarray:
    """Every frame of an MP4 as uint8 [T, H, W, 3]."""
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _png_column(column: list[dict]) -> np.ndarray:
    import io

    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB")) for cell in column])


@dataclass
class Dataset:
    """A LeRobot dataset on disk (see `open_dataset`)."""

    root: Path
    version: str  # "v2.1" | "v3.0"
    info: dict
    bench: dict | None  # meta/bench.json, None for a dataset bench did not record
    _tasks: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def keys(self) -> dict[str, str] | None:
        """Pi image key / "state" / "actions" -> dataset key, from bench.json."""
        return self.bench.get("keys") if self.bench else None

    @cached_property
    def episodes(self) -> list[dict]:
        """episode_index, length, task (the instruction) and, for bench's datasets, the rollout's bench fields
        (task_id, episode, seed, success, first_success_step, ...)."""
        rollouts = {r["episode_index"]: r for r in read_jsonl(self.root / BENCH_EPISODES)
                    if r.get("episode_index") is not None}
        if self.version == "v2.1":
            base = [{"episode_index": e["episode_index"], "length": e["length"], "task": e["tasks"][0]}
                    for e in read_jsonl(self.root / EPISODES)]
        else:
            meta = self._lerobot_meta
            base = [{"episode_index": int(e["episode_index"]), "length": int(e["length"]), "task": e["tasks"][0]}
                    for e in meta.episodes]
        return [{**rollouts.get(e["episode_index"], {}), **e} for e in base]

    def skipped(self) -> list[dict]:
        """Finished rollouts bench did not write (failures under --only-success)."""
        return [r for r in read_jsonl(self.root / BENCH_EPISODES) if r.get("episode_index") is None]

    def frames(self, episode_index: int) -> dict[str, np.ndarray | list[str]]:
        """One episode: dataset key -> array (images uint8 [T, H, W, 3], vectors float32 [T, D], index columns
        [T]), plus "task" (the instruction of every frame)."""
        if self.version == "v2.1":
            return self._frames_v21(episode_index)
        return self._frames_v30(episode_index)

    def vectors(self, episode_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(state [T, D], actions [T, A]) of one episode under bench's keys, without decoding images."""
        keys = self.keys or {}
        if not keys.get("state") or not keys.get("actions"):
            raise BenchError(f"{self.root}: no meta/bench.json naming the state and action keys")
        if self.version == "v3.0":
            frames = self.frames(episode_index)
            return frames[keys["state"]], frames[keys["actions"]]
        import pyarrow.parquet as pq

        path = self.info["data_path"].format(episode_chunk=episode_index // self.info["chunks_size"],
                                             episode_index=episode_index)
        table = pq.read_table(self.root / path, columns=[keys["state"], keys["actions"]])
        return tuple(np.stack(table.column(k).to_numpy(zero_copy_only=False)).astype(np.float32)
                     for k in (keys["state"], keys["actions"]))

    def norm_stats(self) -> dict | None:
        """openpi's norm_stats.json ({"norm_stats": {"state": {mean, std, q01, q99}, "actions": ...}}), or None."""
        path = self.root / NORM_STATS
        return json.loads(path.read_text()) if path.is_file() else None

    def _frames_v21(self, episode_index: int) -> dict:
        import pyarrow.parquet as pq

        chunk = episode_index // self.info["chunks_size"]
        table = pq.read_table(self.root / self.info["data_path"].format(episode_chunk=chunk,
                                                                        episode_index=episode_index))
        out: dict = {}
        for key, ft in self.info["features"].items():
            if ft["dtype"] == "video":
                out[key] = decode_video(self.root / self.info["video_path"].format(
                    episode_chunk=chunk, video_key=key, episode_index=episode_index))
            elif ft["dtype"] == "image":
                out[key] = _png_column(table.column(key).to_pylist())
            elif ft["shape"] == [1]:
                out[key] = table.column(key).to_numpy()
            else:
                out[key] = np.stack(table.column(key).to_numpy(zero_copy_only=False)).astype(ft["dtype"])
        if not self._tasks:
            self._tasks = {t["task_index"]: t["task"] for t in read_jsonl(self.root / TASKS)}
        out["task"] = [self._tasks[int(i)] for i in out["task_index"]]
        return out

    @cached_property
    def _lerobot_meta(self):
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

        return LeRobotDatasetMetadata(LOCAL_REPO_ID, root=self.root)

    def _frames_v30(self, episode_index: int) -> dict:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        dataset = LeRobotDataset(LOCAL_REPO_ID, root=self.root, episodes=[episode_index], video_backend="pyav")
        items = [dataset[i] for i in range(len(dataset))]
        out: dict = {}
        for key, ft in self.info["features"].items():
            if ft["dtype"] in ("video", "image"):
                out[key] = np.stack([_images_uint8(item[key]) for item in items])
            else:
                out[key] = np.stack([np.asarray(item[key]) for item in items]).astype(ft["dtype"])
                out[key] = out[key].reshape(len(items)) if list(ft["shape"]) == [1] else out[key]
        out["task"] = [item["task"] for item in items]
        return out


def open_dataset(path: Path | str) -> Dataset:
    """A v2.1 or v3.0 LeRobot dataset folder (the version from meta/info.json's codebase_version)."""
    root = Path(path)
    if not (root / INFO).is_file():
        raise BenchError(f"{root} is not a LeRobot dataset (no {INFO}): pass the folder `bench record` wrote")
    info = json.loads((root / INFO).read_text())
    version = info.get("codebase_version")
    if version not in ("v2.1", "v3.0"):
        raise BenchError(f"{root}: LeRobot dataset version {version}; bench reads v2.1 and v3.0")
    bench = json.loads((root / BENCH_JSON).read_text()) if (root / BENCH_JSON).is_file() else None
    return Dataset(root, version, info, bench)


def recorded_episodes(path: Path) -> dict[str, list[Episode]]:
    """`bench run --episodes-from`: every rollout a `bench record` dataset ran and wrote, as (task id, seed), per task
    in the dataset's order and numbered 0..n-1 within each task."""
    if not Path(path).is_dir():
        raise BenchError(f"--episodes-from {path}: no such folder; pass a dataset folder written by `bench record`")
    dataset = open_dataset(path)
    rows = dataset.episodes
    if dataset.bench is None or any(r.get("task_id") is None or r.get("seed") is None for r in rows):
        raise BenchError(f"--episodes-from {path}: no per-episode seeds (meta/bench.json and "
                         f"{BENCH_EPISODES}): only a dataset recorded by `bench record` says which episodes it holds")
    if not rows:
        raise BenchError(f"--episodes-from {path}: the dataset holds no episodes")
    episodes: dict[str, list[Episode]] = {}
    for row in sorted(rows, key=lambda r: r["episode_index"]):
        task = episodes.setdefault(row["task_id"], [])
        task.append(Episode(row["task_id"], len(task), int(row["seed"])))
    return episodes
