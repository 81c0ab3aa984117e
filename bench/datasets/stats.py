"""openpi's norm stats of a dataset, computed as openpi's scripts/compute_norm_stats.py does, without openpi.

openpi feeds its data loader's batches (`batch_size` frames in dataset order, the last partial batch dropped) into
`openpi.shared.normalize.RunningStats`, for `state` [dim] and the `actions` chunk [action_horizon, dim] of every
frame (LeRobot's delta_timestamps clamp at the episode's end, so the last action repeats). Mean and std are exact
running moments; q01 and q99 come from per-dimension histograms of 5000 bins whose edges follow the running min and
max. `RunningStats` here does the same arithmetic in the same order, so the numbers agree with openpi's (tested
against openpi's own class in tests/openpi).
"""

from __future__ import annotations

import numpy as np

BINS = 5000  # openpi's _num_quantile_bins
OPENPI_BATCH_SIZE = 32  # openpi's TrainConfig.batch_size default: compute_norm_stats batches the frames by it


class RunningStats:
    """Running mean, mean of squares, min, max and histograms of vectors (all axes but the last are batch)."""

    def __init__(self):
        self.count = 0
        self.mean = self.mean_sq = self.low = self.high = None
        self.hists: list[np.ndarray] = []
        self.edges: list[np.ndarray] = []

    def update(self, batch: np.ndarray) -> None:
        batch = batch.reshape(-1, batch.shape[-1])
        n = len(batch)
        if self.count == 0:
            self.mean, self.mean_sq = batch.mean(axis=0), (batch**2).mean(axis=0)
            self.low, self.high = batch.min(axis=0), batch.max(axis=0)
            self.hists = [np.zeros(BINS) for _ in range(batch.shape[1])]
            self.edges = [np.linspace(lo - 1e-10, hi + 1e-10, BINS + 1) for lo, hi in zip(self.low, self.high)]
        else:
            low, high = batch.min(axis=0), batch.max(axis=0)
            widened = np.any(high > self.high) or np.any(low < self.low)
            self.low, self.high = np.minimum(self.low, low), np.maximum(self.high, high)
            if widened:  # every histogram re-binned onto edges spanning the new range, by its old left edges
                for i, (hist, edges) in enumerate(zip(self.hists, self.edges)):
                    self.edges[i] = np.linspace(self.low[i], self.high[i], BINS + 1)
                    self.hists[i] = np.histogram(edges[:-1], bins=self.edges[i], weights=hist)[0]
        self.count += n
        self.mean += (batch.mean(axis=0) - self.mean) * (n / self.count)
        self.mean_sq += ((batch**2).mean(axis=0) - self.mean_sq) * (n / self.count)
        for i in range(batch.shape[1]):
            self.hists[i] += np.histogram(batch[:, i], bins=self.edges[i])[0]

    def quantile(self, q: float) -> np.ndarray:
        """The left edge of the first bin whose cumulative count reaches q * count."""
        return np.array([edges[np.searchsorted(np.cumsum(hist), q * self.count)]
                         for hist, edges in zip(self.hists, self.edges)])

    def statistics(self) -> dict[str, list[float]]:
        if self.count < 2:
            raise ValueError("norm stats need at least 2 vectors")
        std = np.sqrt(np.maximum(0, self.mean_sq - self.mean**2))
        return {"mean": self.mean.tolist(), "std": std.tolist(), "q01": self.quantile(0.01).tolist(),
                "q99": self.quantile(0.99).tolist()}


def frame_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension statistics of [N, D] vectors taken frame by frame (float64), under lerobot's names: mean, std,
    min, max, q01, q99 (exact quantiles, not openpi's histogram ones)."""
    values = np.asarray(values, np.float64)
    return {"mean": values.mean(0), "std": values.std(0), "min": values.min(0), "max": values.max(0),
            "q01": np.quantile(values, 0.01, axis=0), "q99": np.quantile(values, 0.99, axis=0)}


def action_chunks(actions: np.ndarray, horizon: int) -> np.ndarray:
    """[T, dim] -> [T, horizon, dim]: frame t's actions t .. t+horizon-1, the last one repeated past the end."""
    index = np.minimum(np.arange(len(actions))[:, None] + np.arange(horizon)[None, :], len(actions) - 1)
    return actions[index]


def openpi_batches(episodes: list[tuple[np.ndarray, np.ndarray]], action_horizon: int,
                   batch_size: int = OPENPI_BATCH_SIZE):
    """(state [B, dim], actions [B, horizon, dim]) batches in dataset order, as openpi's loader yields them for
    norm stats: full batches only. `episodes` holds each episode's (state [T, dim], actions [T, dim])."""
    states = np.concatenate([s for s, _ in episodes])
    chunks = np.concatenate([action_chunks(a, action_horizon) for _, a in episodes])
    for start in range(0, len(states) // batch_size * batch_size, batch_size):
        yield states[start:start + batch_size], chunks[start:start + batch_size]


def openpi_norm_stats(episodes: list[tuple[np.ndarray, np.ndarray]], action_horizon: int,
                      batch_size: int = OPENPI_BATCH_SIZE) -> dict:
    """openpi's norm_stats.json content: {"norm_stats": {"state": {mean, std, q01, q99}, "actions": {...}}}."""
    stats = {"state": RunningStats(), "actions": RunningStats()}
    for state, actions in openpi_batches(episodes, action_horizon, batch_size):
        stats["state"].update(state)
        stats["actions"].update(actions)
    return {"norm_stats": {key: s.statistics() for key, s in stats.items()}}
