"""A LeRobot v2.1 dataset written one finished episode at a time, valid after each (lerobot 0.6.1 writes only v3.0,
whose writer holds a Parquet file open until `finalize`: a killed recording would leave it unreadable).

Each episode's files (data parquet, one MP4 per camera) are written under a temporary name and renamed into place;
then the small meta files are rewritten whole, each atomically, `meta/info.json` last: its `total_episodes` is the
commit point. A process killed between two of those renames leaves meta files one episode ahead of info.json;
`V21Writer.reopen` (what --resume does) cuts everything back to info.json's count.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from bench.atomic import atomic_path, write_text
from bench.datasets.layout import DatasetLayout
from bench.errors import BenchError

CHUNK = 1000  # episodes per chunk folder (LeRobot's default)
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
INFO, EPISODES, TASKS, STATS = "meta/info.json", "meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"
BENCH_EPISODES = "meta/bench_episodes.jsonl"  # every finished rollout, written or not: bench's own, see read.py
# H.264 (libx264, yuv420p): decoded by every LeRobot (pyav or torchcodec) and openpi's older one alike; lerobot
# 0.6.1's default AV1 needs a dav1d-enabled FFmpeg on the training machine. GOP 2 as lerobot, for random access.
VIDEO_CODEC = {"codec": "h264", "encoder": "libx264", "pix_fmt": "yuv420p", "crf": 18, "g": 2}
INDEX_FEATURES = {name: {"dtype": dtype, "shape": [1], "names": None} for name, dtype in
                  (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                   ("index", "int64"), ("task_index", "int64"))}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def features(layout: DatasetLayout, video: bool) -> dict:
    """info.json `features` for a layout: images (video or PNG), state, actions, LeRobot's index columns."""
    size = layout.image_size
    image = {"dtype": "video" if video else "image", "shape": [size, size, 3], "names": ["height", "width", "channels"]}
    out = {key: dict(image) for key in layout.images.values()}
    if video:
        for key in layout.images.values():
            out[key]["info"] = {"video.height": size, "video.width": size, "video.codec": VIDEO_CODEC["codec"],
                                "video.pix_fmt": VIDEO_CODEC["pix_fmt"], "video.is_depth_map": False,
                                "video.channels": 3, "has_audio": False}
    out[layout.state] = {"dtype": "float32", "shape": [layout.state_dim],
                         "names": [f"{layout.state_layout}_{i}" for i in range(layout.state_dim)]}
    out[layout.actions] = {"dtype": "float32", "shape": [layout.action_dim],
                           "names": [f"action_{i}" for i in range(layout.action_dim)]}
    return {**out, **INDEX_FEATURES}


def encode_video(frames: np.ndarray, path: Path, fps: int) -> None:
    """uint8 [T, H, W, 3] -> an MP4 at `path` (VIDEO_CODEC), written atomically."""
    import av

    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream(VIDEO_CODEC["encoder"], rate=fps,
                                    options={"crf": str(VIDEO_CODEC["crf"]), "g": str(VIDEO_CODEC["g"])})
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], VIDEO_CODEC["pix_fmt"]
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode())


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _hf_metadata(feats: dict) -> bytes:
    """The `huggingface` schema metadata `datasets` reads features from, in the form both datasets 3.x (openpi's
    lerobot) and 4.x (lerobot 0.6.1) parse (`Sequence`, not 4.x's `List`)."""
    out = {}
    for key, ft in feats.items():
        if ft["dtype"] == "image":
            out[key] = {"_type": "Image"}
        elif ft["dtype"] != "video" and ft["shape"] == [1]:
            out[key] = {"dtype": ft["dtype"], "_type": "Value"}
        elif ft["dtype"] != "video":
            out[key] = {"feature": {"dtype": ft["dtype"], "_type": "Value"}, "length": ft["shape"][0],
                        "_type": "Sequence"}
    return json.dumps({"info": {"features": out}}).encode()


def _table(columns: dict[str, np.ndarray], feats: dict):
    import pyarrow as pa

    arrays, fields = [], []
    for key, ft in feats.items():
        if ft["dtype"] == "video":
            continue
        values = columns[key]
        if ft["dtype"] == "image":
            array = pa.array([{"bytes": _png(image), "path": None} for image in values],
                             pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        elif ft["shape"] == [1]:
            array = pa.array(np.asarray(values).reshape(-1), pa.from_numpy_dtype(np.dtype(ft["dtype"])))
        else:
            flat = pa.array(np.ascontiguousarray(values, dtype=ft["dtype"]).reshape(-1))
            array = pa.FixedSizeListArray.from_arrays(flat, ft["shape"][0])
        arrays.append(array)
        fields.append(pa.field(key, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={b"huggingface": _hf_metadata(feats)}))


def require_lerobot_datasets() -> None:
    """The writer computes lerobot's episode statistics and v3.0 goes through lerobot's converter: both need
    `lerobot.datasets`, which will not import without its extra (datasets, PyAV). Checked before a recording
    starts, so a missing package is one line, not a traceback after the first episode."""
    try:
        import lerobot.datasets.compute_stats  # noqa: F401
    except ImportError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BenchError(f"bench record needs lerobot.datasets, which does not import here ({reason}): "
                         "pip install -e '.[lerobot]'") from None


def episode_stats(columns: dict[str, np.ndarray], feats: dict) -> dict:
    """lerobot 0.6.1's per-episode statistics (`compute_episode_stats`; images sampled and per channel as it does
    for image files), as JSON lists."""
    from lerobot.datasets.compute_stats import (auto_downsample_height_width, compute_episode_stats,
                                                get_feature_stats, sample_indices)

    numeric = {k: ft for k, ft in feats.items() if ft["dtype"] not in ("image", "video")}
    stats = compute_episode_stats({k: np.asarray(columns[k]) for k in numeric}, numeric)
    for key in (k for k, ft in feats.items() if ft["dtype"] in ("image", "video")):
        images = columns[key][sample_indices(len(columns[key]))].transpose(0, 3, 1, 2)
        images = np.stack([auto_downsample_height_width(image) for image in images])
        image_stats = get_feature_stats(images, axis=(0, 2, 3), keepdims=True)
        stats[key] = {k: v if k == "count" else np.squeeze(v / 255.0, axis=0) for k, v in image_stats.items()}
    return {key: {k: np.asarray(v).tolist() for k, v in value.items()} for key, value in stats.items()}


class V21Writer:
    """Owns a v2.1 dataset folder; `add_episode` returns once the episode is committed (info.json rewritten)."""

    def __init__(self, root: Path, info: dict):
        self.root = root
        self.info = info
        count = info["total_episodes"]
        self.episodes = [e for e in read_jsonl(root / EPISODES) if e["episode_index"] < count]
        self.stats = [e for e in read_jsonl(root / STATS) if e["episode_index"] < count]
        self.tasks = read_jsonl(root / TASKS)
        used = {t for e in self.episodes for t in e["tasks"]}
        self.tasks = [t for t in self.tasks if t["task"] in used]
        rollouts = read_jsonl(root / BENCH_EPISODES)
        self.rollouts = [r for r in rollouts if r.get("episode_index") is None or r["episode_index"] < count]

    @classmethod
    def create(cls, root: Path, layout: DatasetLayout, fps: int, video: bool, robot_type: str) -> V21Writer:
        info = {"codebase_version": "v2.1", "robot_type": robot_type, "total_episodes": 0, "total_frames": 0,
                "total_tasks": 0, "total_videos": 0, "total_chunks": 0, "chunks_size": CHUNK, "fps": fps,
                "splits": {}, "data_path": DATA_PATH, "video_path": VIDEO_PATH if video else None,
                "features": features(layout, video)}
        (root / "meta").mkdir(parents=True, exist_ok=True)
        writer = cls(root, info)
        writer._commit()
        return writer

    @classmethod
    def reopen(cls, root: Path) -> V21Writer:
        """A folder a killed recording left: every file past info.json's committed count is dropped."""
        writer = cls(root, json.loads((root / INFO).read_text()))
        count = writer.info["total_episodes"]
        for pattern in ("data/*/episode_*.parquet", "videos/*/*/episode_*.mp4"):
            for path in root.glob(pattern):
                if int(path.stem.split("_")[-1]) >= count:
                    path.unlink()
        for path in root.rglob(".*.tmp"):
            path.unlink()
        writer._commit()
        return writer

    @property
    def video_keys(self) -> list[str]:
        return [k for k, ft in self.info["features"].items() if ft["dtype"] == "video"]

    def skip(self, rollout: dict) -> None:
        """Records a finished rollout that is not written (e.g. a failure under --only-success)."""
        self.rollouts.append({**rollout, "episode_index": None})
        write_text(self.root / BENCH_EPISODES, _jsonl(self.rollouts))

    def add_episode(self, columns: dict[str, np.ndarray], task: str, rollout: dict) -> int:
        """Writes one episode: `columns` maps the layout's dataset keys to [T, ...] arrays (images uint8 [T,H,W,3]).
        Returns its episode_index once info.json counts it."""
        index = self.info["total_episodes"]
        length = len(next(iter(columns.values())))
        if task not in {t["task"] for t in self.tasks}:
            self.tasks.append({"task_index": len(self.tasks), "task": task})
        task_index = next(t["task_index"] for t in self.tasks if t["task"] == task)
        fps = self.info["fps"]
        frame = np.arange(length)
        columns = {**columns, "timestamp": (frame / fps).astype(np.float32), "frame_index": frame,
                   "episode_index": np.full(length, index), "index": self.info["total_frames"] + frame,
                   "task_index": np.full(length, task_index)}
        feats = self.info["features"]
        chunk = index // CHUNK
        import pyarrow.parquet as pq

        with atomic_path(self.root / DATA_PATH.format(episode_chunk=chunk, episode_index=index)) as tmp:
            pq.write_table(_table(columns, feats), tmp)
        for key in self.video_keys:
            encode_video(columns[key], self.root / VIDEO_PATH.format(episode_chunk=chunk, video_key=key,
                                                                     episode_index=index), fps)
        self.stats.append({"episode_index": index, "stats": episode_stats(columns, feats)})
        self.rollouts.append({**rollout, "episode_index": index, "length": length})
        self.episodes.append({"episode_index": index, "tasks": [task], "length": length})
        self.info.update(total_episodes=index + 1, total_frames=self.info["total_frames"] + length)
        self._commit()
        return index

    def _commit(self) -> None:
        """The meta files, each rewritten atomically; info.json last (the commit point)."""
        write_text(self.root / STATS, _jsonl(self.stats))
        write_text(self.root / TASKS, _jsonl(self.tasks))
        write_text(self.root / BENCH_EPISODES, _jsonl(self.rollouts))
        write_text(self.root / EPISODES, _jsonl(self.episodes))
        count = self.info["total_episodes"]
        self.info.update(total_tasks=len(self.tasks), total_videos=count * len(self.video_keys),
                         total_chunks=(count + CHUNK - 1) // CHUNK, splits={"train": f"0:{count}"} if count else {})
        write_text(self.root / INFO, json.dumps(self.info, indent=4))
