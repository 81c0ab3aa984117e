"""Two runs of the same episodes, A (baseline) and B (candidate): which is better per task, and how sure we are.

Episodes are paired by (task, episode index); paired runs start every pair from the same state, so only the
pairs where exactly one policy succeeded (discordant pairs) carry information about the difference. Per task:
both rates with Wilson intervals, the difference B-A with Newcombe's paired interval, the exact McNemar test and
the episodes McNemar would need (Connor); the mean over tasks with a MOVER interval. The statistics, and why
these ones, are in `bench.stats`; this module pairs the episodes and builds the tables.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import pandas as pd
from rich.console import Console

from bench.contract import manifest_differences
from bench.errors import BenchError
from bench.identity import policy_names
from bench.report import format_rate, print_table, to_markdown
from bench.results import ok_mask
from bench.runs import Run, load_run  # noqa: F401 (load_run: `bench compare` and `bench run --baseline` load runs)
from bench.stats import (CONFIDENCE, episodes_needed, mcnemar_exact, mover_mean_interval, newcombe_paired_interval,
                         wilson_interval)
from bench.variants import base_id

ALPHA = 1 - CONFIDENCE
BETTER, WORSE, SAME = "better", "worse", "no detectable difference"


@dataclass(frozen=True)
class Comparison:
    a: Run
    b: Run
    margin: float
    table: pd.DataFrame
    """One row per task, then `mean`: rates, difference, McNemar, verdict, episodes needed."""
    mismatches: list[str]
    """Evaluation-contract differences, `key: A != B` (empty unless --allow-mismatch let them through)."""
    policy: pd.DataFrame
    """The policy part of both contracts side by side."""
    notes: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool((self.table["verdict"] == WORSE).any())

    @property
    def labels(self) -> tuple[str, str]:
        """`<run id> (<policy name>)` of A and B, the policies named apart (`bench.identity`)."""
        names = policy_names([self.a.policy, self.b.policy])
        return f"{self.a.run_id} ({names[self.a.policy]})", f"{self.b.run_id} ({names[self.b.policy]})"


def verdict(difference: float, significant: bool, margin: float) -> str:
    if significant and difference < -margin:
        return WORSE
    if significant and difference > margin:
        return BETTER
    return SAME


def pair_episodes(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Pairs by (task, episode) over the common indices; refuses pairs that did not start from the same seed.

    Returns the paired ok episodes (success_a, success_b) and, per task, how many pairs were left out.
    """
    pairs = a.assign(ok=ok_mask(a)).merge(b.assign(ok=ok_mask(b)), on=["task", "episode"], suffixes=("_a", "_b"))
    differ = pairs[pairs["seed_a"] != pairs["seed_b"]]
    if len(differ):
        first = differ.iloc[0]
        raise BenchError(f"{len(differ)} paired episodes started from different seeds (e.g. {first['task']} episode "
                         f"{first['episode']}: {first['seed_a']} != {first['seed_b']}): the runs did not evaluate "
                         "the same episodes; rerun one with the other's --seed")
    ok = pairs["ok_a"] & pairs["ok_b"]
    excluded = (~ok).groupby(pairs["task"], sort=False).sum()
    kept = pairs.loc[ok, ["task", "episode", "success_once_a", "success_once_b"]]
    return kept.astype({"success_once_a": bool, "success_once_b": bool}), excluded


def paired_row(task: str, group: pd.DataFrame, margin: float) -> dict:
    """One task's paired statistics: A and B rates with Wilson intervals, B-A with Newcombe's paired interval, exact
    McNemar, verdict, episodes needed. `group`: the pairs of `pair_episodes`."""
    a, b = group["success_once_a"], group["success_once_b"]
    n = len(group)
    both, a_only, b_only = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - a_only - b_only
    diff = (b_only - a_only) / n
    p = mcnemar_exact(a_only, b_only)
    return {
        "task": task, "episodes": n,
        "a_rate": a.mean(), **dict(zip(("a_low", "a_high"), wilson_interval(int(a.sum()), n))),
        "b_rate": b.mean(), **dict(zip(("b_low", "b_high"), wilson_interval(int(b.sum()), n))),
        "diff": diff, **dict(zip(("diff_low", "diff_high"), newcombe_paired_interval(both, a_only, b_only, neither))),
        "a_only": a_only, "b_only": b_only, "mcnemar_p": p, "verdict": verdict(diff, p < ALPHA, margin),
        "episodes_needed": episodes_needed(diff, (a_only + b_only) / n),
    }


def _mean_row(rows: pd.DataFrame, margin: float) -> dict:
    """Mean over tasks with the MOVER interval; significant when that interval excludes 0."""
    diff, low, high = mover_mean_interval(list(rows["diff"]), list(rows["diff_low"]), list(rows["diff_high"]))
    return {"task": "mean", "episodes": int(rows["episodes"].sum()), "a_rate": rows["a_rate"].mean(),
            "b_rate": rows["b_rate"].mean(), "diff": diff, "diff_low": low, "diff_high": high,
            "a_only": int(rows["a_only"].sum()), "b_only": int(rows["b_only"].sum()),
            "verdict": verdict(diff, low > 0 or high < 0, margin)}


def _policy_side_by_side(a: dict, b: dict) -> pd.DataFrame:
    pa, pb = ({"preset": m["policy"]["name"], **m.get("contract", {}).get("policy", {})} for m in (a, b))
    keys = list({**pa, **pb})
    return pd.DataFrame({"policy setting": keys, "A": [json.dumps(pa.get(k)) for k in keys],
                         "B": [json.dumps(pb.get(k)) for k in keys]})


def nominal_twins(a: Run, b: Run) -> Run:
    """A as the nominal twins of B's robustness variants: for each variant task of B whose base task A ran and B
    did not, A's episodes of that task again under the variant's id, and in A's contract the base task's spec with
    B's variant keys, so that the contracts may differ only in the variant. A itself when B has no such task."""
    ran, b_ran = set(a.episodes["task"]), set(b.episodes["task"])
    variants = [t for t in dict.fromkeys(b.episodes["task"])
                if base_id(t) != t and t not in ran and base_id(t) in ran and base_id(t) not in b_ran]
    if not variants or "contract" not in a.manifest or "contract" not in b.manifest:
        return a
    manifest = copy.deepcopy(a.manifest)
    specs = manifest["contract"]["tasks"]
    for variant in variants:
        keys = {k: v for k, v in b.manifest["contract"]["tasks"].get(variant, {}).items()
                if k == "variant" or k.startswith("perturbation.")}
        specs[variant] = {**specs[base_id(variant)], **keys}
    return Run(a.path, manifest, pd.concat([a.episodes, twin_episodes(a.episodes, variants)], ignore_index=True))


def twin_episodes(episodes: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Each variant's base-task episodes again, under the variant's id: its nominal twins, to pair with it."""
    return pd.concat([episodes[episodes["task"] == base_id(v)].assign(task=v) for v in variants], ignore_index=True)


def compare(a: Run, b: Run, margin: float = 0.0, allow_mismatch: bool = False) -> Comparison:
    """Refuses runs whose evaluation contracts differ (unless `allow_mismatch`), then compares task by task. When B
    ran robustness variants of tasks A ran nominally, each variant is compared with its nominal twins in A."""
    if not 0 <= margin < 1:
        raise BenchError(f"--margin is a difference in success rate between 0 and 1 (0.05 = 5 points), got {margin}")
    a = nominal_twins(a, b)
    common = [task for task in dict.fromkeys(a.episodes["task"]) if task in set(b.episodes["task"])]
    mismatches = manifest_differences(a.manifest, b.manifest, common)
    if mismatches and not allow_mismatch:
        raise BenchError("the runs were not evaluated the same way:\n  " + "\n  ".join(mismatches)
                         + "\nrerun one with the other's settings, or pass --allow-mismatch to compare anyway")
    pairs, excluded = pair_episodes(a.episodes, b.episodes)
    tasks = list(dict.fromkeys(pairs["task"]))
    if not tasks:
        raise BenchError(f"{a.path} and {b.path} share no (task, episode) with a finished episode in both: "
                         "compare runs of the same tasks")
    rows = pd.DataFrame([paired_row(task, pairs[pairs["task"] == task], margin) for task in tasks])
    rows["excluded"] = [int(excluded.get(task, 0)) for task in tasks]
    rows["episodes_needed"] = rows["episodes_needed"].astype("Int64")
    table = pd.concat([rows, pd.DataFrame([_mean_row(rows, margin)])], ignore_index=True) if len(rows) > 1 else rows
    notes = []
    for label, run in (("A", a), ("B", b)):
        only = sorted(set(run.episodes["task"]) - set(tasks))
        if only:
            notes.append(f"{label} only: {', '.join(only)} (not compared)")
    left_out = int(rows["excluded"].sum())
    if left_out:
        notes.append(f"{left_out} episode pairs left out: an episode's status is not ok")
    return Comparison(a, b, margin, table, mismatches, _policy_side_by_side(a.manifest, b.manifest), notes)


def format_diff(diff: float, low: float, high: float) -> str:
    return f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def comparison_display(table: pd.DataFrame) -> pd.DataFrame:
    def dash(value, fmt):
        return "-" if pd.isna(value) else fmt(value)

    return pd.DataFrame({
        "task": table["task"],
        "n": table["episodes"].astype(int),
        "A (95% CI)": [format_rate(r.a_rate, r.a_low, r.a_high) for r in table.itertuples()],
        "B (95% CI)": [format_rate(r.b_rate, r.b_low, r.b_high) for r in table.itertuples()],
        "B-A pts (95% CI)": [format_diff(r.diff, r.diff_low, r.diff_high) for r in table.itertuples()],
        "A/B only": [f"{r.a_only}/{r.b_only}" for r in table.itertuples()],
        "McNemar p": [dash(p, lambda v: f"{v:.4g}") for p in table["mcnemar_p"]],
        "verdict": table["verdict"],
        "n needed": [dash(n, lambda v: str(int(v))) for n in table["episodes_needed"]],
    })


LEGEND = (f"n: paired episodes; A/B only: pairs only A / only B succeeded in; verdict: exact McNemar p < {ALPHA:g} "
          "and the difference beyond the margin (mean row: its 95% interval excludes 0); n needed: episodes per task "
          "for McNemar to detect the observed difference with 80% power (Connor 1987; asymptotic, so below about 10 "
          "discordant pairs the exact test needs more: it cannot reject with fewer than 6)")


def _header(c: Comparison) -> list[str]:
    a, b = c.labels
    return [f"A (baseline): {c.a.path} - {a}", f"B (candidate): {c.b.path} - {b}",
            f"margin: {100 * c.margin:g} points", *c.notes]


def to_json(c: Comparison) -> dict:
    a, b = c.labels
    return {"a": {"path": str(c.a.path), "run": a}, "b": {"path": str(c.b.path), "run": b},
            "margin": c.margin, "alpha": ALPHA, "mismatches": c.mismatches, "notes": c.notes,
            "policy": c.policy.to_dict(orient="records"),
            "tasks": json.loads(c.table.to_json(orient="records"))}


def to_markdown_report(c: Comparison) -> str:
    parts = ["# bench compare", ""]
    if c.mismatches:
        parts += ["**Evaluation settings differ (compared with --allow-mismatch):**", ""]
        parts += [f"- `{m}`" for m in c.mismatches] + [""]
    parts += [f"- {line}" for line in _header(c)] + [""]
    parts += [to_markdown(comparison_display(c.table)), LEGEND, "", to_markdown(c.policy)]
    return "\n".join(parts)


def print_comparison(c: Comparison, console: Console) -> None:
    if c.mismatches:
        console.print("[yellow]warning:[/] the runs were not evaluated the same way (--allow-mismatch):",
                      highlight=False)
        for line in c.mismatches:
            console.print(f"  {line}", highlight=False, markup=False)
    for line in _header(c):
        console.print(line, highlight=False, markup=False)
    print_table(c.policy, "policies", console)
    print_table(comparison_display(c.table), "B vs A: success_once", console)
    console.print(LEGEND, highlight=False, markup=False)
