"""Robustness results: each perturbed episode against its nominal twin (same base task, same episode index, same
seed), per task and variant; then the mean drop per axis. The paired statistics are `bench compare`'s (Newcombe's
interval of the paired difference, exact McNemar), with the nominal task as A and the variant as B.
"""

from __future__ import annotations

import pandas as pd

from bench.compare import ALPHA, comparison_display, format_diff, pair_episodes, paired_row, twin_episodes
from bench.report import format_rate
from bench.results import ok_mask
from bench.runs import Run
from bench.stats import mover_mean_interval
from bench.variants import base_id


def variant_axes(run: Run) -> dict[str, str]:
    """Variant task id -> its axis, from the run's manifest (the specs it ran)."""
    return {t["id"]: t.get("perturbation", {}).get("axis", "") for t in run.manifest.get("suite", {}).get("tasks", [])
            if t.get("variant")}


def robustness_table(run: Run) -> pd.DataFrame:
    """One row per variant whose base task ran too: nominal (A) and perturbed (B) success_once with the paired drop,
    McNemar p and verdict (`bench.compare`), and both success_at_end rates; empty when the run has no such pair."""
    episodes, axes = run.episodes, variant_axes(run)
    ran = set(episodes["task"])
    variants = [t for t in dict.fromkeys(episodes["task"]) if t in axes and base_id(t) in ran]
    if not variants:
        return pd.DataFrame()
    nominal = twin_episodes(episodes, variants)
    perturbed = episodes[episodes["task"].isin(variants)]
    pairs, _ = pair_episodes(nominal, perturbed)  # refuses twins that did not start from the same seed
    rows = []
    for variant in variants:
        group = pairs[pairs["task"] == variant]
        if group.empty:
            continue
        at_end = {}
        for side, frame in (("a", nominal), ("b", perturbed)):
            kept = frame[(frame["task"] == variant) & ok_mask(frame) & frame["episode"].isin(group["episode"])]
            at_end[f"{side}_at_end"] = float(kept["success_at_end"].mean())
        rows.append({**paired_row(variant, group, 0.0), "base": base_id(variant), "axis": axes[variant], **at_end})
    return pd.DataFrame(rows)


def axis_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per axis: the mean drop over its (task, variant) rows with the MOVER interval, as `bench compare`'s mean row."""
    rows = []
    for axis, group in table.groupby("axis", sort=False):
        diff, low, high = mover_mean_interval(list(group["diff"]), list(group["diff_low"]), list(group["diff_high"]))
        rows.append({"axis": axis, "variants": len(group), "episodes": int(group["episodes"].sum()),
                     "nominal": group["a_rate"].mean(), "perturbed": group["b_rate"].mean(), "diff": diff,
                     "diff_low": low, "diff_high": high, "significant": bool(low > 0 or high < 0)})
    return pd.DataFrame(rows)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as `bench report` shows it."""
    shown = comparison_display(table).rename(columns={"A (95% CI)": "nominal (95% CI)",
                                                      "B (95% CI)": "perturbed (95% CI)",
                                                      "B-A pts (95% CI)": "drop pts (95% CI)",
                                                      "A/B only": "nominal/perturbed only"})
    shown.insert(1, "axis", table["axis"].values)
    shown.insert(5, "at end: nominal / perturbed",
                 [f"{format_rate(a)} / {format_rate(b)}" for a, b in zip(table["a_at_end"], table["b_at_end"])])
    return shown


def summary_lines(table: pd.DataFrame) -> list[str]:
    """`axis: nominal -> perturbed, drop pts [interval] over N variants` per axis (`axis_summary`)."""
    return [f"{r.axis}: {format_rate(r.nominal)} -> {format_rate(r.perturbed)}, "
            f"{format_diff(r.diff, r.diff_low, r.diff_high)} pts over {r.variants} task variants"
            + (" (interval excludes 0)" if r.significant else "") for r in axis_summary(table).itertuples()]


LEGEND = (f"each perturbed episode against its nominal twin (same task, episode index and seed); rates are "
          f"success_once, 'at end' success_at_end; verdict: exact McNemar p < {ALPHA:g}")
