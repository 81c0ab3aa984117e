"""Tables from episode records: the per-task leaderboard of a run, and policy x task across runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy.stats import binomtest

from bench.results import find_runs, ok_mask, read_episodes, read_manifest

CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a success rate (sound at 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def task_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per task: success rates with 95% Wilson intervals over the episodes that ended normally, errors
    apart, steps to first success, return."""
    rows = []
    ok = ok_mask(episodes)
    for task, all_of_task in episodes.groupby("task", sort=False):
        group = all_of_task[ok[all_of_task.index]]
        n = len(group)
        once = int(group["success_once"].sum())
        low, high = wilson_interval(once, n)
        successful = group.loc[group["success_once"], "first_success_step"]
        rows.append({
            "task": task,
            "episodes": n,
            "errors": len(all_of_task) - n,
            "success_once": once / n if n else float("nan"),
            "ci_low": low,
            "ci_high": high,
            "success_at_end": float(group["success_at_end"].mean()) if n else float("nan"),
            "mean_steps_to_success": float(successful.mean()) if len(successful) else float("nan"),
            "mean_return": float(group["return"].mean()),
        })
    table = pd.DataFrame(rows)
    if len(table) > 1:
        mean = {"task": "mean", "episodes": int(table["episodes"].sum()), "errors": int(table["errors"].sum())}
        mean.update({c: float(table[c].mean()) for c in ("success_once", "success_at_end", "mean_return")})
        table = pd.concat([table, pd.DataFrame([mean])], ignore_index=True)
    return table


def format_rate(rate: float, low: float = float("nan"), high: float = float("nan")) -> str:
    if pd.isna(rate):
        return "-"
    text = f"{100 * rate:.1f}%"
    return text if pd.isna(low) else f"{text} [{100 * low:.1f}, {100 * high:.1f}]"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "task": table["task"],
        "episodes": table["episodes"].astype(int),
        "errors": table["errors"].astype(int),
        "success_once (95% CI)": [format_rate(r.success_once, r.ci_low, r.ci_high) for r in table.itertuples()],
        "success_at_end": [format_rate(v) for v in table["success_at_end"]],
        "steps to success": ["-" if pd.isna(v) else f"{v:.1f}" for v in table["mean_steps_to_success"]],
        "return": [f"{v:.2f}" for v in table["mean_return"]],
    })


def to_markdown(display: pd.DataFrame) -> str:
    header = "| " + " | ".join(display.columns) + " |"
    rule = "|" + "|".join("---" for _ in display.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in display.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def print_table(display: pd.DataFrame, title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    for column in display.columns:
        wraps = column in ("instruction", "description", "detail")
        table.add_column(column, justify="left" if wraps or column in ("task", "policy", "id", "check") else "right",
                         no_wrap=not wraps)
    for row in display.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    (console or Console()).print(table)


def write_task_leaderboard(run_dir: Path, episodes: pd.DataFrame, title: str,
                           console: Console | None = None) -> pd.DataFrame:
    """Prints the run's per-task table and saves it as leaderboard.md and leaderboard.csv."""
    table = task_table(episodes)
    display = _display(table)
    table.to_csv(run_dir / "leaderboard.csv", index=False)
    (run_dir / "leaderboard.md").write_text(f"# {title}\n\n" + to_markdown(display))
    print_table(display, title, console)
    return table


def spread_table(runs: list[pd.DataFrame]) -> pd.DataFrame:
    """Per task, success_once of each repeated run and their spread (sample std, min, max): the noise floor."""
    runs = [episodes[ok_mask(episodes)] for episodes in runs]
    rates = pd.DataFrame({i: episodes.groupby("task", sort=False)["success_once"].mean()
                          for i, episodes in enumerate(runs)})
    return pd.DataFrame({
        "task": rates.index,
        "episodes": runs[0].groupby("task", sort=False).size().reindex(rates.index).to_numpy(),
        "rates": [list(row) for row in rates.to_numpy()],
        "mean": rates.mean(axis=1).to_numpy(),
        "std": rates.std(axis=1, ddof=1).to_numpy(),
        "min": rates.min(axis=1).to_numpy(),
        "max": rates.max(axis=1).to_numpy(),
    })


def spread_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "task": table["task"],
        "episodes": table["episodes"],
        "success_once per repeat": [", ".join(format_rate(r) for r in rates) for rates in table["rates"]],
        **{c: [format_rate(v) for v in table[c]] for c in ("mean", "std", "min", "max")},
    })


def latest_episodes(root: Path) -> pd.DataFrame:
    """Episodes that count under `root`: per (policy, task) those of the newest run, with a `run_dir` column."""
    latest: dict[tuple[str, str], tuple[str, pd.DataFrame]] = {}
    for run_dir in find_runs(root):
        manifest = read_manifest(run_dir)
        episodes = read_episodes(run_dir)
        if episodes.empty:
            continue
        started = manifest.get("created", "")
        policy = manifest["policy"]["name"]
        for task, group in episodes.groupby("task"):
            key = (policy, task)
            if key not in latest or latest[key][0] < started:
                latest[key] = (started, group.assign(policy=policy, run_dir=run_dir))
    if not latest:
        return pd.DataFrame()
    return pd.concat([group for _, (_, group) in sorted(latest.items())], ignore_index=True)


def leaderboard(root: Path) -> pd.DataFrame:
    """policy x task success_once across the runs under `root`; per (policy, task) the newest run counts."""
    return board_of(latest_episodes(root))


def board_of(episodes: pd.DataFrame) -> pd.DataFrame:
    """policy x task success_once of episodes as `latest_episodes` returns them."""
    if episodes.empty:
        return pd.DataFrame()
    rows = []
    for (policy, task), group in episodes.groupby(["policy", "task"]):
        row = task_table(group).iloc[0]
        rows.append({"policy": policy, "task": task, **{c: row[c] for c in (
            "episodes", "errors", "success_once", "ci_low", "ci_high", "success_at_end")}})
    return pd.DataFrame(rows)


def leaderboard_display(board: pd.DataFrame) -> pd.DataFrame:
    """Wide form: one row per policy, one column per task, plus the mean over its tasks."""
    cells = board.assign(cell=[format_rate(r.success_once, r.ci_low, r.ci_high) + f" n={r.episodes}"
                               + (f" errors={r.errors}" if r.errors else "") for r in board.itertuples()])
    wide = cells.pivot(index="policy", columns="task", values="cell").fillna("-")
    wide["mean"] = board.groupby("policy")["success_once"].mean().map(format_rate)
    return wide.reset_index()
