"""Privileged scripted experts for ManiSkill tabletop tasks.

They read ground-truth object poses from the state part of the observation and steer the `pd_ee_delta_pose`
controller through a short list of phases per task (approach, grasp, move, release). They exist to prove the
harness end to end (env, batching, metrics, reports) without any checkpoint, and to give an upper reference
that real policies can be compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation as R

from bench.errors import BenchError
from bench.policies import EpisodeContext, Obs, Policy
from bench.tasks import TaskSpec

# A phase target: obs (for the envs in that phase) -> (tcp position [n, 3], tcp orientation or None to hold it).
Target = Callable[[Obs], tuple[np.ndarray, R | None]]

POS_SCALE = 0.1  # metres per unit of position action (controller bound)
ROT_SCALE = -0.1  # radians per unit of rotation action; the sign is the controller's (rot_lower = -0.1)
OPEN, CLOSED = 1.0, -1.0
DOWN = R.from_euler("x", np.pi)  # tcp z axis pointing at the table


@dataclass(frozen=True)
class Phase:
    """Drive the tcp to `target` with the gripper at `gripper`; leave once within `tol` metres and `rot_tol`
    radians after at least `min_steps`, or after `max_steps` regardless (so a stuck env still moves on)."""

    target: Target
    gripper: float
    tol: float = 0.01
    rot_tol: float = 0.05
    min_steps: int = 0
    max_steps: float = 40
    speed: float = 1.0  # cap on the position action's norm
    gain: float = 1.0  # >1 shrinks the steady-state error the joint PD leaves under load (fine alignment)


def _p(obs: Obs, key: str) -> np.ndarray:
    return obs[key][:, :3]


def _rot(obs: Obs, key: str) -> R:
    return R.from_quat(obs[key][:, 3:7], scalar_first=True)


def _yaw(rot: R) -> np.ndarray:
    """Heading of the rotation's x axis in the world xy plane."""
    x = rot.apply([1.0, 0.0, 0.0])
    return np.arctan2(x[:, 1], x[:, 0])


def _top_down(yaw: np.ndarray) -> R:
    """Gripper pointing down with its x axis at `yaw`; the fingers close along (sin yaw, -cos yaw, 0)."""
    return R.from_euler("z", yaw[:, None]) * DOWN


def _nearest_yaw(yaw: np.ndarray, reference: np.ndarray, period: float) -> np.ndarray:
    """The yaw equivalent to `yaw` modulo `period` closest to `reference` (least wrist rotation)."""
    return reference + (yaw - reference + period / 2) % period - period / 2


def _cube_grasp(obs: Obs, key: str, clear_of: str | None = None) -> R:
    """Top-down grasp across two opposite faces of a cube: the face pair nearest the current yaw, or, given
    `clear_of` (a neighbouring object), the pair whose fingers open away from it so they do not hit it."""
    tcp_yaw = _yaw(_rot(obs, "extra/tcp_pose"))
    yaw = _nearest_yaw(_yaw(_rot(obs, key)), tcp_yaw, np.pi / 2)
    if clear_of is None:
        return _top_down(yaw)
    other = _nearest_yaw(yaw + np.pi / 2, tcp_yaw, np.pi)
    to_other = _p(obs, clear_of)[:, :2] - _p(obs, key)[:, :2]
    across = lambda y: np.abs(np.sin(y) * to_other[:, 0] - np.cos(y) * to_other[:, 1])  # |closing axis . to_other|
    return _top_down(np.where(across(other) < across(yaw), other, yaw))


def _above(pos: np.ndarray, dz: float) -> np.ndarray:
    return pos + np.array([0.0, 0.0, dz])


def _at_height(pos: np.ndarray, z: float | np.ndarray) -> np.ndarray:
    """`pos` moved to an absolute height: lift targets must not follow the object being lifted."""
    return np.concatenate([pos[:, :2], np.broadcast_to(z, (len(pos), 1))], axis=1)


def _hold(obs: Obs) -> tuple[np.ndarray, None]:
    """Stay where the tcp is (a zero motion action)."""
    return _p(obs, "extra/tcp_pose"), None


def _tcp_for_object(obs: Obs, key: str, object_goal: np.ndarray) -> np.ndarray:
    """Tcp position that puts a held object at `object_goal`, keeping the current tcp->object offset."""
    return _p(obs, "extra/tcp_pose") + object_goal - _p(obs, key)


def _error(tcp_pose: np.ndarray, pos: np.ndarray, rot: R | None) -> tuple[np.ndarray, R | None]:
    """Position error [n, 3] and world-frame rotation error (None when the orientation is free)."""
    return pos - tcp_pose[:, :3], None if rot is None else rot * R.from_quat(tcp_pose[:, 3:7], scalar_first=True).inv()


def pose_action(dpos: np.ndarray, drot: R | None, speed: float, gain: float) -> np.ndarray:
    """Position and rotation part [n, 6] of a pd_ee_delta_pose action that reduces the error (dpos, drot)."""
    move = gain * dpos / POS_SCALE
    move *= np.minimum(1.0, speed / np.maximum(np.linalg.norm(move, axis=1, keepdims=True), 1e-9))
    turn = np.zeros_like(move)
    if drot is not None:
        # The controller left-multiplies the delta (world frame) and reads it as intrinsic XYZ euler angles.
        turn = gain * drot.as_euler("XYZ") / ROT_SCALE
        turn /= np.maximum(1.0, np.linalg.norm(turn, axis=1, keepdims=True))
    return np.concatenate([move, turn], axis=1)


# ----------------------------------------------------------------------------------------------------- tasks


def pick_cube() -> list[Phase]:
    cube = "extra/obj_pose"
    return [
        Phase(lambda o: (_above(_p(o, cube), 0.05), _cube_grasp(o, cube)), OPEN),
        Phase(lambda o: (_p(o, cube), _cube_grasp(o, cube)), OPEN, tol=0.005),
        Phase(_hold, CLOSED, min_steps=5, max_steps=5),
        Phase(lambda o: (_tcp_for_object(o, cube, o["extra/goal_pos"]), None), CLOSED, max_steps=np.inf),
    ]


def stack_cube() -> list[Phase]:
    a, b = "extra/cubeA_pose", "extra/cubeB_pose"
    on_b = lambda o, dz: _tcp_for_object(o, a, _above(_p(o, b), 0.04 + dz))
    return [
        Phase(lambda o: (_above(_p(o, a), 0.05), _cube_grasp(o, a, clear_of=b)), OPEN),
        Phase(lambda o: (_p(o, a), _cube_grasp(o, a, clear_of=b)), OPEN, tol=0.005),
        Phase(_hold, CLOSED, min_steps=5, max_steps=5),
        Phase(lambda o: (_at_height(_p(o, "extra/tcp_pose"), 0.12), None), CLOSED, tol=0.02),
        Phase(lambda o: (on_b(o, 0.03), None), CLOSED, tol=0.01),
        Phase(lambda o: (on_b(o, 0.002), None), CLOSED, tol=0.003, speed=0.3),
        Phase(_hold, OPEN, min_steps=5, max_steps=5),
        Phase(lambda o: (_above(_p(o, b), 0.15), None), OPEN, max_steps=np.inf, speed=0.5),
    ]


def push_cube() -> list[Phase]:
    cube, h = "extra/obj_pose", 0.02
    behind = lambda o, dz: _p(o, cube) + np.array([-h - 0.03, 0.0, dz])
    return [
        Phase(lambda o: (behind(o, 0.05), None), CLOSED),
        Phase(lambda o: (behind(o, 0.0), None), CLOSED, tol=0.005),
        Phase(lambda o: (o["extra/goal_pos"] + np.array([-h - 0.01, 0.0, h]), None), CLOSED,
              max_steps=np.inf, speed=0.5),
    ]


def pull_cube() -> list[Phase]:
    cube, h = "extra/obj_pose", 0.02
    beyond = lambda o, dz: _p(o, cube) + np.array([h + 0.03, 0.0, dz])
    return [
        Phase(lambda o: (beyond(o, 0.05), None), CLOSED),
        Phase(lambda o: (beyond(o, 0.0), None), CLOSED, tol=0.005),
        Phase(lambda o: (o["extra/goal_pos"] + np.array([h + 0.01, 0.0, h]), None), CLOSED,
              max_steps=np.inf, speed=0.5),
    ]


def place_sphere() -> list[Phase]:
    ball, radius, floor = "extra/obj_pose", 0.02, 0.005  # bin bottom block top is 5 mm above the bin origin
    in_bin = lambda o, dz: _tcp_for_object(o, ball, o["extra/bin_pos"] + np.array([0.0, 0.0, floor + radius + dz]))
    return [
        Phase(lambda o: (_above(_p(o, ball), 0.05), None), OPEN),
        Phase(lambda o: (_p(o, ball), None), OPEN, tol=0.005),
        Phase(_hold, CLOSED, min_steps=5, max_steps=5),
        Phase(lambda o: (_at_height(_p(o, "extra/tcp_pose"), 0.12), None), CLOSED, tol=0.02),
        Phase(lambda o: (in_bin(o, 0.05), None), CLOSED, tol=0.005),
        Phase(lambda o: (in_bin(o, 0.005), None), CLOSED, tol=0.003, speed=0.3),
        Phase(_hold, OPEN, min_steps=5, max_steps=5),
        Phase(lambda o: (_above(o["extra/bin_pos"], 0.15), None), OPEN, max_steps=np.inf, speed=0.5),
    ]


def peg_insertion_side() -> list[Phase]:
    """Grasp the peg behind its centre (tail side, so the fingers stay outside the hole), then servo the peg's
    observed pose onto the hole axis: the tcp target is goal_peg * peg^-1 * tcp, recomputed every step."""
    peg, hole = "extra/peg_pose", "extra/box_hole_pose"
    half_len = lambda o: o["extra/peg_half_size"][:, :1]

    def grasp(o: Obs) -> tuple[np.ndarray, R]:
        rot = _rot(o, peg)
        yaw = _nearest_yaw(_yaw(rot), _yaw(_rot(o, "extra/tcp_pose")), np.pi)
        return _p(o, peg) - rot.apply([1.0, 0.0, 0.0]) * (half_len(o) / 2 + 0.01), _top_down(yaw)

    def peg_at(head: Callable[[Obs], np.ndarray]) -> Target:
        """Tcp pose putting the peg on the hole axis with its head `head(o)` metres past the hole centre."""
        def target(o: Obs) -> tuple[np.ndarray, R]:
            hole_rot, peg_rot, tcp_rot = _rot(o, hole), _rot(o, peg), _rot(o, "extra/tcp_pose")
            peg_goal = _p(o, hole) + hole_rot.apply([1.0, 0.0, 0.0]) * (head(o) - half_len(o))
            to_goal = hole_rot * peg_rot.inv()
            return peg_goal + to_goal.apply(_p(o, "extra/tcp_pose") - _p(o, peg)), to_goal * tcp_rot
        return target

    outside = lambda gap: lambda o: -half_len(o) - gap  # the box is as deep as the peg: entrance at -half_len
    return [
        Phase(lambda o: (_above(grasp(o)[0], 0.05), grasp(o)[1]), OPEN),
        Phase(grasp, OPEN, tol=0.005),
        Phase(_hold, CLOSED, min_steps=6, max_steps=6),
        Phase(lambda o: (_tcp_for_object(o, peg, _at_height(_p(o, peg), _p(o, hole)[:, 2:])), None), CLOSED,
              tol=0.02),
        Phase(peg_at(outside(0.04)), CLOSED, tol=0.01, rot_tol=0.05, max_steps=60),
        Phase(peg_at(outside(0.01)), CLOSED, tol=0.003, rot_tol=0.015, max_steps=30, speed=0.3, gain=1.5),
        Phase(peg_at(lambda o: 0.01), CLOSED, tol=0.015, max_steps=60, speed=0.2, gain=1.5),
        Phase(_hold, CLOSED, max_steps=np.inf),  # deep enough: pushing on would jam the peg against the walls
    ]


TASKS: dict[str, Callable[[], list[Phase]]] = {
    "PickCube-v1": pick_cube,
    "StackCube-v1": stack_cube,
    "PushCube-v1": push_cube,
    "PullCube-v1": pull_cube,
    "PlaceSphere-v1": place_sphere,
    "PegInsertionSide-v1": peg_insertion_side,
}


class ExpertPolicy(Policy):
    """Privileged scripted expert: proves the harness end to end without a checkpoint (reads true object poses).

    Closed loop: one action per query (chunks of horizon 1).
    """

    name = "expert"
    version = "2"
    reads_cameras = False  # object and TCP poses from the simulator state

    def __init__(self, num_slots: int, seed: int = 0):
        self._plans: dict[str, list[Phase]] = {task: make() for task, make in TASKS.items()}
        self._task: list[str | None] = [None] * num_slots
        self._phase = np.zeros(num_slots, dtype=int)
        self._steps = np.zeros(num_slots, dtype=int)  # steps spent in the current phase

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "control_mode": "pd_ee_delta_pose",
                "tasks": sorted(TASKS)}

    def check_task(self, task: TaskSpec) -> None:
        if task.base_id not in TASKS:  # a robustness variant is scripted as its base task
            raise BenchError(f"the expert policy has no script for {task.base_id}; it scripts {', '.join(sorted(TASKS))}")
        if task.control_mode != "pd_ee_delta_pose":
            raise BenchError(f"the expert policy drives pd_ee_delta_pose, but {task.id} is set to "
                             f"'{task.control_mode}' in its task file")

    def reset(self, slot: int, context: EpisodeContext) -> None:
        self._task[slot] = context.task.base_id
        self._phase[slot] = 0
        self._steps[slot] = 0

    def snapshot(self, slot: int) -> object:
        return int(self._phase[slot]), int(self._steps[slot])

    def restore(self, slot: int, state: object) -> None:
        self._phase[slot], self._steps[slot] = state

    def act(self, obs: Obs, slots: np.ndarray) -> np.ndarray:
        slots = np.asarray(slots)
        actions = np.zeros((len(slots), 7))
        keys = [(self._task[s], self._phase[s]) for s in slots]
        for task, phase_idx in sorted(set(keys)):
            rows = np.array([i for i, key in enumerate(keys) if key == (task, phase_idx)])
            plans = self._plans[task]
            phase = plans[phase_idx]
            sub = {k: v[rows] for k, v in obs.items() if k.startswith("extra/")}  # poses only, not images
            dpos, drot = _error(sub["extra/tcp_pose"], *phase.target(sub))
            actions[rows, :6] = pose_action(dpos, drot, phase.speed, phase.gain)
            actions[rows, 6] = phase.gripper
            pos_err = np.linalg.norm(dpos, axis=1)
            rot_err = np.zeros_like(pos_err) if drot is None else drot.magnitude()
            s = slots[rows]
            self._steps[s] += 1
            done = ((pos_err < phase.tol) & (rot_err < phase.rot_tol) & (self._steps[s] >= phase.min_steps)
                    | (self._steps[s] >= phase.max_steps)) & (phase_idx + 1 < len(plans))
            self._phase[s[done]] += 1
            self._steps[s[done]] = 0
        return np.clip(actions, -1.0, 1.0).astype(np.float32)[:, None, :]
