"""Adapters between environments and policies: action chunks -> env steps, ManiSkill observations -> policy inputs
(state layouts, images resized with padding). What is specific to Pi0/Pi0.5 is in bench.policies.pi_transforms."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

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


def controller_action(actions: np.ndarray, low: np.ndarray, high: np.ndarray, control_mode: str) -> np.ndarray:
    """What ManiSkill 3.0.1's controller takes from `actions` [n, dim] (normalized units): each dim clipped to the
    action bounds, except pd_ee_delta_pose's rotation (dims 3:6), which PDEEPoseController scales down to norm 1 when
    longer instead of clipping per dim. A dataset records this, not what the policy asked for."""
    out = np.clip(np.asarray(actions, np.float32), low, high)
    if control_mode == "pd_ee_delta_pose":
        rotation = np.asarray(actions, np.float32)[:, 3:6]
        norm = np.linalg.norm(rotation, axis=1, keepdims=True)
        out[:, 3:6] = np.where(norm > 1, rotation / np.maximum(norm, 1e-12), rotation)
    return out


# --- ManiSkill observations -> policy inputs (Pi0/Pi0.5: bench.policies.pi_transforms; remote policies) ---

def quat_wxyz_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """[..., 4] quaternions, scalar first (ManiSkill / SAPIEN: w, x, y, z) -> [..., 3] rotation vectors (axis times
    angle in radians), scipy's canonical form: angle in [0, pi]. LIBERO's state (openpi's examples/libero,
    robosuite's `quat2axisangle`: xyz * 2 acos(w) / sqrt(1 - w^2), zeros when that is 0) agrees wherever w >= 0;
    it does not flip a w < 0 quaternion, so there its vector is this one's other form (angle 2 pi - theta, axis
    reversed)."""
    from scipy.spatial.transform import Rotation

    quat = np.asarray(quat, np.float64)
    flat = Rotation.from_quat(quat.reshape(-1, 4), scalar_first=True).as_rotvec()
    return flat.reshape(*quat.shape[:-1], 3)


def _tcp_pos_quat_gripper(obs):
    return np.concatenate([obs["extra/tcp_pose"], obs["agent/qpos"][:, 7:8]], axis=1)


def _tcp_pos_axisangle_fingers(obs):
    pose = obs["extra/tcp_pose"]
    rotvec = quat_wxyz_to_axis_angle(pose[:, 3:7]).astype(pose.dtype)
    return np.concatenate([pose[:, :3], rotvec, obs["agent/qpos"][:, 7:9]], axis=1)


# name -> obs -> [B, width] state; every name says what is in it, rotations with their convention (layouts of the same
# width cannot be told apart by the width check against the checkpoint's norm stats: the preset must say)
STATE_LAYOUTS = {
    "qpos": lambda obs: obs["agent/qpos"],  # 7 arm joints + 2 finger joints
    "qpos8": lambda obs: obs["agent/qpos"][:, :8],  # 7 arm joints + one finger
    # TCP position (3) + TCP quaternion w, x, y, z (4, ManiSkill's order) + one finger joint (qpos[7])
    "tcp_pos_quat_gripper": _tcp_pos_quat_gripper,
    # LIBERO's layout: TCP position (3) + axis-angle (3, `quat_wxyz_to_axis_angle`) + both finger joints (qpos[7:9])
    "tcp_pos_axisangle_fingers": _tcp_pos_axisangle_fingers,
}
STATE_LAYOUT_ALIASES = {"tcp_pose_gripper": "tcp_pos_quat_gripper"}  # old name -> what it is; both keep working
STATE_LAYOUTS.update({old: STATE_LAYOUTS[new] for old, new in STATE_LAYOUT_ALIASES.items()})
STATE_WIDTHS = {"qpos": 9, "qpos8": 8, "tcp_pos_quat_gripper": 8, "tcp_pos_axisangle_fingers": 8}  # the Panda arm
STATE_WIDTHS.update({old: STATE_WIDTHS[new] for old, new in STATE_LAYOUT_ALIASES.items()})


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
