"""The interface every backend implements: N env slots stepped in lockstep, and what a step returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.tasks import TaskSpec

Obs = dict[str, np.ndarray]  # flat: "sensor_data/base_camera/rgb" -> [k, H, W, 3], one row per active slot
ActionBounds = tuple[np.ndarray, np.ndarray]  # (low, high) of one env's action


@dataclass
class StepOutput:
    obs: Obs
    reward: np.ndarray  # [k] float
    success: np.ndarray  # [k] bool
    failed: dict[int, str] = field(default_factory=dict)  # slot -> why its env is gone (its rows are zeros)
    observed: np.ndarray | None = None
    """[k] bool: rows whose cameras were rendered this step; the camera rows of the others are zeros, not images.
    None: every row was observed."""


def stack_obs(rows: Sequence[Obs]) -> Obs:
    """Observations of single slots -> one observation with a row per slot, in order. A key some rows lack (a slot
    not observed has no camera keys, a dead one none at all) gets zero rows there."""
    shapes = {}
    for row in rows:
        for key, value in row.items():
            shapes.setdefault(key, value)
    return {key: np.concatenate([row[key] if key in row else np.zeros_like(like) for row in rows])
            for key, like in shapes.items()}


def observe_mask(observe: Sequence[bool] | np.ndarray | None, k: int) -> np.ndarray:
    """`observe` as a [k] bool array: None means every row."""
    return np.ones(k, bool) if observe is None else np.asarray(observe, bool).reshape(k)


class BatchedEnvs(ABC):
    """N environment slots stepped in lockstep; a wave uses slots 0..k-1 for k <= N episodes."""

    backend: str
    num_envs: int
    restarts: int = 0  # env workers replaced after dying
    _active: int = 0  # slots of the current wave

    @abstractmethod
    def start_task(self, spec: TaskSpec) -> ActionBounds:
        """Builds the task's environments (or finishes what `begin_task(spec)` began); returns the controller's
        action bounds."""

    def begin_task(self, spec: TaskSpec) -> None:
        """Starts building the task's environments without waiting, where the backend can (worker processes), so
        that they build while the caller does other work, such as building the policy; `start_task(spec)` then
        waits for them. Elsewhere this does nothing and `start_task` does it all."""

    @abstractmethod
    def reset(self, seeds: Sequence[int], observe: Sequence[bool] | None = None) -> Obs:
        """Starts len(seeds) <= num_envs episodes, one per slot, from their pinned initial states. `observe` [k]
        says which slots render their cameras now (default all); the others return the state keys only."""

    independent_slots: bool = False  # can a subset of the slots step while the others wait (lanes, see runner)

    @abstractmethod
    def step_async(self, actions: np.ndarray, slots: Sequence[int], observe: Sequence[bool] | None = None) -> None:
        """Starts stepping `slots` (active ones) with actions [len(slots), action_dim]; `step_wait` collects.
        Physics, reward and success every step; cameras only for the slots `observe` names (default all), since
        rendering costs more than the physics and most steps execute an action chunk nobody looks at."""

    @abstractmethod
    def step_wait(self, slots: Sequence[int]) -> StepOutput:
        """The step started by `step_async(..., slots)`: rows in the order of `slots`."""

    def step(self, actions: np.ndarray, slots: Sequence[int] | None = None,
             observe: Sequence[bool] | None = None) -> StepOutput:
        """Steps `slots` (default: every active slot) with actions [len(slots), action_dim] and waits."""
        slots = range(self._active) if slots is None else slots
        self.step_async(actions, slots, observe)
        return self.step_wait(slots)

    @abstractmethod
    def render(self, slots: Sequence[int]) -> list[np.ndarray | None]:
        """Third-person RGB views [H, W, 3] of the given active slots (ManiSkill's human render camera); None for
        a slot whose env is gone."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
