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
"""

from __future__ import annotations

import numpy as np

from bench.check.findings import FAIL, OK, WARN, Finding, fail, graded
from bench.datasets.stats import frame_stats, openpi_norm_stats
from bench.policies.pi_normalize import Normalizer

TOLERANCE_OK = 0.1  # dataset stds
TOLERANCE_FAIL = 0.5  # dataset stds
STD_FLOOR = 1e-2  # absolute (rad, m, normalized action units): near-constant dims are not divided by ~0


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


def deviations(norm: Normalizer, data: dict[str, np.ndarray], std: np.ndarray) -> dict[str, np.ndarray]:
    """Per statistic the normalizer uses: |checkpoint - dataset| / max(dataset std, STD_FLOOR), per dataset dim."""
    width = len(data["mean"])
    scale = np.maximum(std, STD_FLOOR)
    names = ("q01", "q99") if norm.use_quantiles else ("mean", "std")
    return {name: np.abs(np.asarray(getattr(norm, name))[:width] - data[name]) / scale for name in names}


def verdict(worst: float) -> str:
    return OK if worst <= TOLERANCE_OK else WARN if worst <= TOLERANCE_FAIL else FAIL


def compare(key: str, norm: Normalizer, recomputed: dict[str, dict], exact_width: bool) -> Finding:
    """The checkpoint's `key` ("state" or "actions") statistics against the dataset's, recomputed each way in
    `recomputed` ({how: statistics}, "per frame" first); the closest counts. The state's widths must be equal;
    actions may be padded in the checkpoint (`exact_width` False: its first D dims count)."""
    check = f"norm stats: {key}"
    std = recomputed["per frame"]["std"]
    how, data, found = min(((how, data, deviations(norm, data, std)) for how, data in recomputed.items()),
                           key=lambda item: float(np.max(np.stack(list(item[2].values())))))
    width, stats_width = len(data["mean"]), len(norm.mean)
    if stats_width < width or (exact_width and stats_width != width):
        return fail(check, f"the checkpoint's {key} stats have {stats_width} dims, the dataset's {key} {width}",
                    f"use the norm stats of the dataset the checkpoint was trained on (--norm-stats), or fix the "
                    f"preset's {'state_layout' if key == 'state' else 'action_dim'}")
    per_dim = np.max(np.stack(list(found.values())), axis=0)
    dim = int(np.argmax(per_dim))
    stat = max(found, key=lambda name: found[name][dim])
    worst = float(per_dim[dim])
    detail = (f"{norm.kind}: worst dim {dim} {stat} checkpoint {float(getattr(norm, stat)[dim]):.4g} vs dataset "
              f"({how}) {float(data[stat][dim]):.4g}: {worst:.2f} dataset std; ok <= {TOLERANCE_OK}, FAIL > "
              f"{TOLERANCE_FAIL}")
    return graded(check, verdict(worst), detail,
                  "the checkpoint was normalized with other data: pass --norm-stats computed on its training set, or "
                  "check that this dataset (control mode, state layout) is the one it was trained on",
                  deviation_std=per_dim.round(4).tolist(), checkpoint={n: np.asarray(getattr(norm, n))[:width].tolist()
                                                                      for n in found},
                  dataset={n: np.asarray(data[n]).tolist() for n in found}, recomputed=how)
