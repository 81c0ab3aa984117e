"""Adapters between environments and policies: ManiSkill observations -> Pi inputs, action chunks -> steps."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class ActionChunker:
    """Per-slot queues of actions: a slot executes `replan_steps` actions of each chunk, then asks again.

    Queues are per slot, so a slot that starts a new episode never disturbs the others. A slot whose chunk was
    unusable (or whose episode ended in an error) is dropped: it asks for nothing more and holds still (zero
    action) until its next episode, while the rest of the wave goes on.
    """

    def __init__(self, num_slots: int, replan_steps: int, action_dim: int):
        self.replan_steps = replan_steps
        self.action_dim = action_dim
        self._queues = [deque() for _ in range(num_slots)]
        self._dropped: set[int] = set()

    def reset(self, slot: int) -> None:
        self._queues[slot].clear()
        self._dropped.discard(slot)

    def drop(self, slot: int) -> None:
        self._queues[slot].clear()
        self._dropped.add(slot)

    def slots_needing_chunk(self, slots: Sequence[int]) -> np.ndarray:
        return np.array([s for s in slots if not self._queues[s] and s not in self._dropped], dtype=np.int64)

    def push(self, slots: np.ndarray, chunks: np.ndarray, policy: str) -> dict[int, str]:
        """Queues each slot's chunk; returns {slot: why} for the slots whose chunk is unusable (the wrong shape,
        NaN or inf: an error, never silently clipped), which are dropped."""
        chunks = np.asarray(chunks)
        expected = (len(slots), self.action_dim)
        if chunks.ndim != 3 or (chunks.shape[0], chunks.shape[2]) != expected or chunks.shape[1] == 0:
            why = (f"policy '{policy}' returned actions of shape {chunks.shape}; expected "
                   f"[{len(slots)}, horizon, {self.action_dim}] for this task's controller")
            bad = {int(s): why for s in slots}
        else:
            bad = {int(s): f"policy '{policy}' returned NaN or infinite actions"
                   for s, chunk in zip(slots, chunks) if not np.isfinite(chunk).all()}
            for slot, chunk in zip(slots, chunks):
                if int(slot) not in bad:
                    self._queues[slot].extend(chunk[: self.replan_steps])
        for slot in bad:
            self.drop(slot)
        return bad

    def pop(self, slots: Sequence[int]) -> np.ndarray:
        """The next action of each of `slots` (rows in that order)."""
        return np.stack([self._queues[s].popleft() if s not in self._dropped else np.zeros(self.action_dim)
                         for s in slots])


# --- ManiSkill observations -> Pi0/Pi0.5 model inputs ----------------------------------------------------
# Small batched transforms, composed by the Pi policies according to their preset (openpi's transforms.py is
# the model: each step does one thing and can be tested against openpi's formula on its own).

PI_IMAGE_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")
STATE_LAYOUTS = {
    "qpos": lambda obs: obs["agent/qpos"],  # 7 arm joints + 2 finger joints
    "qpos8": lambda obs: obs["agent/qpos"][:, :8],  # 7 arm joints + one finger
    "tcp_pose_gripper": lambda obs: np.concatenate([obs["extra/tcp_pose"], obs["agent/qpos"][:, 7:8]], axis=1),
}
STATE_WIDTHS = {"qpos": 9, "qpos8": 8, "tcp_pose_gripper": 8}  # on the Panda arm, every task's robot


def resize_with_pad(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [B, H, W, 3] -> [B, height, width, 3]: bilinear resize keeping the aspect ratio, black padding
    centred on the short side (what openpi does before the model, so a non-square camera is not stretched)."""
    from PIL import Image

    if images.shape[1:3] == (height, width):
        return images
    src_h, src_w = images.shape[1:3]
    ratio = max(src_w / width, src_h / height)
    new_h, new_w = int(src_h / ratio), int(src_w / ratio)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out = np.zeros((len(images), height, width, images.shape[3]), np.uint8)
    for i, image in enumerate(images):
        resized = Image.fromarray(image).resize((new_w, new_h), resample=Image.BILINEAR)
        out[i, top:top + new_h, left:left + new_w] = np.asarray(resized)
    return out


def pi_images(obs: dict[str, np.ndarray], camera_map: dict[str, str | None], size: int = 224):
    """Camera images and masks under Pi's keys; a camera mapped to None is a black image with mask False."""
    batch = len(next(iter(obs.values())))
    images, masks = {}, {}
    for key in PI_IMAGE_KEYS:
        camera = camera_map.get(key)
        if camera is None:
            images[key] = np.zeros((batch, size, size, 3), np.uint8)
            masks[key] = np.zeros(batch, bool)
        else:
            images[key] = resize_with_pad(obs[f"sensor_data/{camera}/rgb"], size, size)
            masks[key] = np.ones(batch, bool)
    return images, masks


def pad_to(x: np.ndarray, dim: int) -> np.ndarray:
    """Zero-pad the last axis to `dim` (Pi models use 32-D state and action vectors)."""
    if x.shape[-1] > dim:
        raise ValueError(f"vector of {x.shape[-1]} dims does not fit the model's {dim}")
    return np.concatenate([x, np.zeros((*x.shape[:-1], dim - x.shape[-1]), x.dtype)], axis=-1)


@dataclass(frozen=True)
class Normalizer:
    """openpi's normalization of one key: MEAN_STD for Pi0, quantiles (q01, q99 -> [-1, 1]) for Pi0.5.

    Stats may cover fewer dims than the (padded) vector; the remaining dims pass through unchanged."""

    mean: np.ndarray
    std: np.ndarray
    q01: np.ndarray | None = None
    q99: np.ndarray | None = None
    use_quantiles: bool = False

    @classmethod
    def from_stats(cls, stats: dict, use_quantiles: bool) -> "Normalizer":
        arrays = {k: np.asarray(stats[k], np.float64) for k in ("mean", "std", "q01", "q99") if k in stats}
        if use_quantiles and not {"q01", "q99"} <= arrays.keys():
            raise ValueError("norm stats lack q01/q99, which quantile normalization (Pi0.5) needs")
        return cls(use_quantiles=use_quantiles, **arrays)

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        n = len(self.mean)
        return x[..., :n].astype(np.float64), x[..., n:], n

    def normalize(self, x: np.ndarray) -> np.ndarray:
        head, tail, _ = self._split(x)
        if self.use_quantiles:
            head = (head - self.q01) / (self.q99 - self.q01 + 1e-6) * 2.0 - 1.0
        else:
            head = (head - self.mean) / (self.std + 1e-6)
        return np.concatenate([head.astype(x.dtype), tail], axis=-1)

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        head, tail, _ = self._split(x)
        if self.use_quantiles:
            head = (head + 1.0) / 2.0 * (self.q99 - self.q01 + 1e-6) + self.q01
        else:
            head = head * (self.std + 1e-6) + self.mean
        return np.concatenate([head.astype(x.dtype), tail], axis=-1)


def discretize_state(normalized_state: np.ndarray) -> np.ndarray:
    """Pi0.5 state tokens: 256 bins over [-1, 1] (openpi: np.digitize over linspace(-1, 1, 257)[:-1], minus 1)."""
    return np.digitize(normalized_state, bins=np.linspace(-1, 1, 256 + 1)[:-1]) - 1


def clean_prompt(instruction: str) -> str:
    return instruction.strip().replace("_", " ").replace("\n", " ")


def pi05_prompt(instruction: str, normalized_state: np.ndarray) -> str:
    """Pi0.5 writes the discretized state into the text prompt."""
    bins = " ".join(map(str, discretize_state(normalized_state)))
    return f"Task: {clean_prompt(instruction)}, State: {bins};\nAction: "
