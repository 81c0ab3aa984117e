"""Tables from episode records: the per-task table of a run, and the policy x task leaderboard across runs.

The leaderboard counts, for each policy (its identity: `bench.identity`) and task, the newest run's episodes. Runs
evaluated under different contracts (another suite version, run seed, replan steps, sim backend, package versions:
the manifest's `contract.evaluation`) are never mixed in one table: the leaderboard prints one table per
evaluation contract, the one most runs share first, and heads every other with what differs. Within a table a
task whose spec differs between runs (another step budget, robot, cameras: `contract.tasks`) gets one column per
spec, named by what differs. Why tables rather than flagged cells in one table: a flagged cell still invites
comparing it with its row and column, the "newest run counts" rule would let a run under a new contract hide a
policy's result under the old one (the bug this replaces), and a table per contract is exactly the set of numbers
`bench compare` agrees to compare. The price: `bench run --repeat K` (run seeds seed..seed+K-1) fills K tables.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.identity import PolicyIdentity, label_warnings, policy_names
from bench.results import ok_mask
from bench.runs import Run, RunSet, read_runs
from bench.stats import wilson_interval


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
        wraps = column in ("instruction", "description", "detail", "fix")
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


@dataclass(frozen=True)
class ContractTable:
    """The counted episodes of one evaluation contract: per (policy, task column) those of the newest run."""

    evaluation: dict | None
    """The contract's `evaluation` settings; None for runs that predate evaluation contracts."""
    heading: str
    """The settings (first table) or how they differ from the first table's."""
    episodes: pd.DataFrame
    """The counted records, with `policy` (the identity's name), `column` (task, and spec if several) and `run_dir`."""

    @cached_property
    def board(self) -> pd.DataFrame:
        return board_of(self.episodes)


@dataclass(frozen=True)
class Leaderboard:
    root: Path
    tables: list[ContractTable]
    runs: dict[Path, Run]
    """The runs with counted episodes, by folder."""
    warnings: list[str]
    unreadable: list[tuple[Path, str]]

    @property
    def empty(self) -> bool:
        return not self.tables

    @property
    def board(self) -> pd.DataFrame:
        """Every table's board, one long table with a `table` column (0: the first)."""
        boards = [table.board.assign(table=i) for i, table in enumerate(self.tables)]
        return pd.concat(boards, ignore_index=True) if boards else pd.DataFrame()


def _canonical(value) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _changed(reference: dict | None, other: dict | None, versus: str = "") -> str:
    """`key value` for each setting of `other` that differs from `reference`, followed by the reference's value
    when `versus` names it."""
    if other is None:
        return "no evaluation contract recorded (runs of an older bench)"
    keys = [k for k in other if reference is None or reference.get(k) != other.get(k)]
    keys += [k for k in reference or {} if k not in other]
    return ", ".join(f"{k} {json.dumps(other.get(k))}"
                     + (f" ({versus}: {json.dumps(reference.get(k))})" if versus and reference else "") for k in keys)


Cell = tuple[str | None, PolicyIdentity, str, str | None]
"""(evaluation settings, policy, task, task spec): the settings and spec as canonical JSON, None without a contract."""


def leaderboard_of(runs: RunSet) -> Leaderboard:
    """Per evaluation contract, policy identity and task (and task spec), the newest run's episodes."""
    newest_first = sorted(runs.runs, key=lambda r: (r.created, str(r.path)), reverse=True)
    names = policy_names(run.policy for run in newest_first)
    cells: dict[Cell, tuple[Run, pd.DataFrame]] = {}
    for run in newest_first:
        contract = run.manifest.get("contract") or {}
        for task, group in run.episodes.groupby("task", sort=False):
            spec = (contract.get("tasks") or {}).get(task)
            cells.setdefault((_canonical(contract.get("evaluation")), run.policy, task, _canonical(spec)), (run, group))
    by_evaluation: dict[str | None, dict[Cell, tuple[Run, pd.DataFrame]]] = {}
    for cell, counted in cells.items():  # newest first, so that ties between contracts go to the newest
        by_evaluation.setdefault(cell[0], {})[cell] = counted
    order = sorted(by_evaluation, key=lambda e: -len({run.path for run, _ in by_evaluation[e].values()}))
    reference = _load(order[0]) if order else None
    tables = []
    for i, evaluation in enumerate(order):
        settings = _load(evaluation)
        heading = (_changed(None, settings) if i == 0 else
                   "evaluated differently from table 1: " + _changed(reference, settings, versus="table 1"))
        tables.append(ContractTable(settings, heading, _counted_episodes(by_evaluation[evaluation], names)))
    return Leaderboard(runs.root, tables, {run.path: run for run, _ in cells.values()},
                       label_warnings(run.policy for run in newest_first), runs.unreadable)


def _counted_episodes(cells: dict[Cell, tuple[Run, pd.DataFrame]], names: dict[PolicyIdentity, str]) -> pd.DataFrame:
    """The cells' episodes with `policy`, `column` and `run_dir`. A task run with several specs under one evaluation
    contract gets a column per spec: the commonest one is named by the task, the others by what differs."""
    specs = {task: Counter(spec for _, _, t, spec in cells if t == task) for task in {cell[2] for cell in cells}}
    main = {task: counts.most_common(1)[0][0] for task, counts in specs.items()}

    def column(task: str, spec: str | None) -> str:
        return task if spec == main[task] else f"{task} ({_changed(_load(main[task]), _load(spec))})"

    return pd.concat([group.assign(policy=names[policy], column=column(task, spec), run_dir=run.path)
                      for (_, policy, task, spec), (run, group) in cells.items()], ignore_index=True)


def _load(canonical: str | None):
    return None if canonical is None else json.loads(canonical)


def leaderboard(root: Path) -> pd.DataFrame:
    """policy x task success_once across the runs under `root` (`leaderboard_of`, all tables in one long form)."""
    return leaderboard_of(read_runs(root)).board


def board_of(episodes: pd.DataFrame) -> pd.DataFrame:
    """policy x task success_once of counted episodes (a `policy` column, and `column` to split a task's specs)."""
    if episodes.empty:
        return pd.DataFrame()
    if "column" not in episodes:
        episodes = episodes.assign(column=episodes["task"])
    rows = []
    for (policy, column), group in episodes.groupby(["policy", "column"]):
        row = task_table(group).iloc[0]
        rows.append({"policy": policy, "task": group["task"].iloc[0], "column": column, **{c: row[c] for c in (
            "episodes", "errors", "success_once", "ci_low", "ci_high", "success_at_end")}})
    return pd.DataFrame(rows)


def leaderboard_display(board: pd.DataFrame) -> pd.DataFrame:
    """Wide form: one row per policy, one column per task (and spec), plus the mean over its tasks."""
    cells = board.assign(cell=[format_rate(r.success_once, r.ci_low, r.ci_high) + f" n={r.episodes}"
                               + (f" errors={r.errors}" if r.errors else "") for r in board.itertuples()])
    wide = cells.pivot(index="policy", columns="column" if "column" in board else "task", values="cell").fillna("-")
    wide["mean"] = board.groupby("policy")["success_once"].mean().map(format_rate)
    return wide.reset_index().rename_axis(columns=None)


def table_title(board: Leaderboard, i: int) -> str:
    n = len(board.tables)
    return f"leaderboard: {board.root}" + (f" - evaluation {i + 1} of {n}: {board.tables[i].heading}" if n > 1 else "")


def notices(board: Leaderboard) -> list[str]:
    """What a reader must know before reading the tables: unreadable runs, ambiguous labels, several contracts."""
    lines = [f"unreadable: {path}: {why}" for path, why in board.unreadable]
    lines += [f"warning: {warning}" for warning in board.warnings]
    if len(board.tables) > 1:
        lines.append(f"note: the runs were evaluated {len(board.tables)} different ways: one table per evaluation "
                     "contract; numbers in different tables are not comparable")
    return lines


def print_notices(board: Leaderboard, console: Console) -> None:
    for line in notices(board):
        kind, _, rest = line.partition(" ")
        console.print(f"[yellow]{kind}[/] {escape(rest)}", highlight=False, soft_wrap=True)


def print_leaderboard(board: Leaderboard, console: Console) -> None:
    print_notices(board, console)
    n = len(board.tables)
    for i, table in enumerate(board.tables):
        if n > 1:  # a line of its own: a table's title is wrapped to the table's width
            console.print(f"[bold]evaluation {i + 1} of {n}[/]: {escape(table.heading)}", highlight=False,
                          soft_wrap=True)
        title = f"leaderboard: {board.root}" + (f" - evaluation {i + 1} of {n}" if n > 1 else "")
        print_table(leaderboard_display(table.board), title, console)


def leaderboard_markdown(board: Leaderboard) -> str:
    parts = [f"> {line}\n" for line in notices(board)]
    for i, table in enumerate(board.tables):
        heading = f"## {table_title(board, i)}\n\n" if len(board.tables) > 1 else ""
        parts.append(heading + to_markdown(leaderboard_display(table.board)))
    return "\n".join(parts)
