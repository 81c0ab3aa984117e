"""Baselines that need no checkpoint: lower bounds every real policy must beat."""

from __future__ import annotations

import copy

import numpy as np

from bench.policies import EpisodeContext, Obs, Policy


class _OpenLoopBaseline(Policy):
    reads_cameras = False  # open loop: reads nothing

    def __init__(self, num_slots: int, seed: int = 0):
        self._contexts: list[EpisodeContext | None] = [None] * num_slots

    def describe(self) -> dict:
        return {"name": self.name, "version": "1"}

    def reset(self, slot: int, context: EpisodeContext) -> None:
        self._contexts[slot] = context

    def act(self, obs: Obs, slots: np.ndarray) -> np.ndarray:
        return np.stack([self._action(int(s))[None] for s in slots]).astype(np.float32)

    def snapshot(self, slot: int) -> object:
        return ()  # the episode's context is set by reset and never changes

    def restore(self, slot: int, state: object) -> None:
        pass


class ZeroPolicy(_OpenLoopBaseline):
    """Always the zero action: with delta controllers the arm holds still."""

    name = "zero"

    def _action(self, slot: int) -> np.ndarray:
        return np.zeros_like(self._contexts[slot].action_low)


class RandomPolicy(_OpenLoopBaseline):
    """Uniform actions within the controller's bounds, seeded by the episode seed so reruns are identical."""

    name = "random"

    def __init__(self, num_slots: int, seed: int = 0):
        super().__init__(num_slots, seed)
        self._rngs: list[np.random.Generator | None] = [None] * num_slots

    def reset(self, slot: int, context: EpisodeContext) -> None:
        super().reset(slot, context)
        self._rngs[slot] = np.random.default_rng(context.episode.seed)

    def snapshot(self, slot: int) -> object:
        return copy.deepcopy(self._rngs[slot])

    def restore(self, slot: int, state: object) -> None:
        self._rngs[slot] = copy.deepcopy(state)

    def _action(self, slot: int) -> np.ndarray:
        context = self._contexts[slot]
        return self._rngs[slot].uniform(context.action_low, context.action_high)
