"""Adapters between environments and policies. Here: action chunks -> per-step controller actions."""

from __future__ import annotations

from collections import deque

import numpy as np


class ActionChunker:
    """Per-slot queues of actions: a slot executes `replan_steps` actions of each chunk, then asks again.

    Queues are per slot, so a slot that starts a new episode never disturbs the others.
    """

    def __init__(self, num_slots: int, replan_steps: int):
        self.replan_steps = replan_steps
        self._queues = [deque() for _ in range(num_slots)]

    def reset(self, slot: int) -> None:
        self._queues[slot].clear()

    def slots_needing_chunk(self, active: int) -> np.ndarray:
        return np.array([s for s in range(active) if not self._queues[s]], dtype=np.int64)

    def push(self, slots: np.ndarray, chunks: np.ndarray, action_dim: int, policy: str) -> None:
        chunks = np.asarray(chunks)
        if chunks.ndim != 3 or chunks.shape[0] != len(slots) or chunks.shape[2] != action_dim:
            raise ValueError(
                f"policy '{policy}' returned actions of shape {chunks.shape}; expected "
                f"[{len(slots)}, horizon, {action_dim}] for this task's controller"
            )
        if not np.isfinite(chunks).all():
            raise ValueError(f"policy '{policy}' returned NaN or infinite actions")
        for slot, chunk in zip(slots, chunks):
            self._queues[slot].extend(chunk[: self.replan_steps])

    def pop(self, active: int) -> np.ndarray:
        return np.stack([self._queues[s].popleft() for s in range(active)])
