"""The checkpoint's norm stats against statistics recomputed from the dataset, per dimension.

Tolerance: a checkpoint statistic may differ from the dataset's by up to TOLERANCE_OK dataset standard deviations
(per dimension; a floor of STD_FLOOR for near-constant dims) and still be "ok": openpi computes quantiles from
histograms and often over a larger or subsampled dataset, which moves q01/q99 by a few hundredths of a std, while
stats of another dataset, control mode or state layout are off by whole stds. Up to TOLERANCE_FAIL it is a
warning (the model sees inputs shifted by a visible fraction of their spread); beyond, a failure.
Only the statistics the checkpoint normalizes with are compared: q01/q99 for quantiles (Pi0.5), mean/std for
MEAN_STD (Pi0). The dataset's statistics are recomputed two ways, and the checkpoint is held against the closer:
per frame (lerobot's) and as openpi's compute_norm_stats does (`bench.datasets.stats`: action chunks of the
training horizon whose last action repeats at each episode's end, full batches only), which weights episode ends
differently and moves action quantiles by whole stds on short episodes.
Sampling noise: the statistics of a few episodes are noisy (an episode's frames are correlated, so the effective
sample size is about the number of episodes), and a checkpoint trained on many episodes of the same tasks sits
half a std off a 12-episode dataset's q01/q99. Each statistic's noise is estimated by a bootstrap over whole
episodes (`sampling_noise`); the tolerances apply to what is left beyond NOISE_Z times it, so a small dataset
loosens the check by what it cannot tell, a large one (noise -> 0) does not, and stats of another dataset
(whole stds off) still fail. One episode gives no estimate (noise 0).
"""

from __future__ import annotations

import numpy as np

from bench.check.findings import FAIL, OK, WARN, Finding, fail, graded
from bench.datasets.stats import frame_stats, openpi_norm_stats
from bench.policies.pi_normalize import Normalizer

TOLERANCE_OK = 0.1  # dataset stds
TOLERANCE_FAIL = 0.5  # dataset stds
STD_FLOOR = 1e-2  # absolute (rad, m, normalized action units): near-constant dims are not divided by ~0
NOISE_Z = 3.0  # a deviation within 3x its sampling noise is not held against the checkpoint
RESAMPLES = 200  # bootstrap resamples of the episodes
SEED = 0  # the bootstrap's, so that a check gives the same verdict twice
STATISTICS = ("mean", "std", "q01", "q99")  # what a checkpoint normalizes with


def references(episodes: list[tuple[np.ndarray, np.ndarray]], horizon: int) -> dict[str, dict]:
    """"state" / "actions" -> {how: statistics}: per frame, and openpi's (when the dataset fills one batch)."""
    found = {"state": {"per frame": frame_stats(np.concatenate([s for s, _ in episodes]))},
             "actions": {"per frame": frame_stats(np.concatenate([a for _, a in episodes]))}}
    try:
        openpi = openpi_norm_stats(episodes, horizon)["norm_stats"]
    except ValueError:  # fewer frames than one of openpi's batches
        return found
    for key in found:
        found[key][f"openpi, horizon {horizon}"] = {k: np.asarray(v) for k, v in openpi[key].items()}
    return found


def sampling_noise(episodes: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """"state" / "actions" -> {statistic: its per-frame value's std over RESAMPLES resamples of whole episodes
    (drawn with replacement), per dim, in units of max(dataset std, STD_FLOOR)}. 0 with one episode."""
    draws = np.random.default_rng(SEED).integers(0, len(episodes), (RESAMPLES, len(episodes)))
    noise = {}
    for key, values in (("state", [s for s, _ in episodes]), ("actions", [a for _, a in episodes])):
        scale = np.maximum(frame_stats(np.concatenate(values))["std"], STD_FLOOR)
        resampled = [frame_stats(np.concatenate([values[i] for i in draw])) for draw in draws]
        noise[key] = {name: np.std([r[name] for r in resampled], axis=0) / scale for name in STATISTICS}
    return noise


def deviations(norm: Normalizer, data: dict[str, np.ndarray], std: np.ndarray) -> dict[str, np.ndarray]:
    """Per statistic the normalizer uses: |checkpoint - dataset| / max(dataset std, STD_FLOOR), per dataset dim."""
    width = len(data["mean"])
    scale = np.maximum(std, STD_FLOOR)
    names = ("q01", "q99") if norm.use_quantiles else ("mean", "std")
    return {name: np.abs(np.asarray(getattr(norm, name))[:width] - data[name]) / scale for name in names}


def verdict(worst: float) -> str:
    return OK if worst <= TOLERANCE_OK else WARN if worst <= TOLERANCE_FAIL else FAIL


def worst(found: dict[str, np.ndarray], noise: dict[str, np.ndarray]) -> tuple[float, float, str, int]:
    """(excess, deviation, statistic, dim) with the largest excess = max(0, deviation - NOISE_Z * noise), then the
    largest deviation."""
    return max((max(0.0, float(dev[dim] - NOISE_Z * noise[name][dim])), float(dev[dim]), name, dim)
               for name, dev in found.items() for dim in range(len(dev)))


def compare(key: str, norm: Normalizer, recomputed: dict[str, dict], exact_width: bool,
            noise: dict[str, np.ndarray], episodes: int) -> Finding:
    """The checkpoint's `key` ("state" or "actions") statistics against the dataset's, recomputed each way in
    `recomputed` ({how: statistics}, "per frame" first); the closest counts. `noise` is sampling_noise's for `key`
    over `episodes` episodes; the verdict goes by the excess beyond NOISE_Z times it. The state's widths must be
    equal; actions may be padded in the checkpoint (`exact_width` False: its first D dims count)."""
    check = f"norm stats: {key}"
    std = recomputed["per frame"]["std"]
    found = {how: deviations(norm, data, std) for how, data in recomputed.items()}
    how = min(found, key=lambda how: worst(found[how], noise)[:2])
    data, found = recomputed[how], found[how]
    width, stats_width = len(data["mean"]), len(norm.mean)
    if stats_width < width or (exact_width and stats_width != width):
        return fail(check, f"the checkpoint's {key} stats have {stats_width} dims, the dataset's {key} {width}",
                    f"use the norm stats of the dataset the checkpoint was trained on (--norm-stats), or fix the "
                    f"preset's {'state_layout' if key == 'state' else 'action_dim'}")
    excess, deviation, stat, dim = worst(found, noise)
    detail = (f"{norm.kind}: worst dim {dim} {stat} checkpoint {float(getattr(norm, stat)[dim]):.4g} vs dataset "
              f"({how}) {float(data[stat][dim]):.4g}: {deviation:.2f} dataset std (sampling noise "
              f"{float(noise[stat][dim]):.2f} std over {episodes} episode{'s' * (episodes != 1)}); ok <= "
              f"{TOLERANCE_OK}, FAIL > {TOLERANCE_FAIL} beyond {NOISE_Z:g}x noise")
    return graded(check, verdict(excess), detail,
                  "the checkpoint was normalized with other data: pass --norm-stats computed on its training set, or "
                  "check that this dataset (control mode, state layout) is the one it was trained on",
                  deviation_std=np.max(np.stack(list(found.values())), axis=0).round(4).tolist(),
                  noise_std={n: np.asarray(noise[n]).round(4).tolist() for n in found}, episodes=episodes,
                  checkpoint={n: np.asarray(getattr(norm, n))[:width].tolist() for n in found},
                  dataset={n: np.asarray(data[n]).tolist() for n in found}, recomputed=how)
