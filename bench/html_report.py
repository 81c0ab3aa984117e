"""`bench report`: one static HTML page over the runs under a folder: leaderboard, plots, comparisons, videos.

The page needs no server and no network: plots are inline SVG (base64), styles are inline, and videos are
linked by a path relative to the page, so the page and the run folders can be copied or served together.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from bench import __version__, robustness
from bench.compare import LEGEND, compare, comparison_display
from bench.errors import BenchError
from bench.report import Leaderboard, leaderboard_display, notices, table_title
from bench.stats import CONFIDENCE

REPORT = "report.html"


@dataclass(frozen=True)
class ComparisonSection:
    """A comparison computed elsewhere (`bench compare`): a heading and its display table, one row per task.

    A `verdict` column, if present, is coloured (better / worse / anything else)."""

    title: str
    table: pd.DataFrame
    notes: tuple[str, ...] = ()
    chart: str = ""
    """An SVG data URI shown under the table ("" for none)."""


@dataclass(frozen=True)
class Clip:
    policy: str
    episode: int
    success: bool
    src: str  # relative to the page
    evaluation: int = 1  # the leaderboard table (evaluation contract) the episode counts in


def success_plot(board: pd.DataFrame, column: str, policies: list[str]) -> str:
    """Bar chart of success_once per policy on one task column, Wilson interval error bars; an SVG data URI."""
    rows = board[board["column"] == column].set_index("policy").reindex(policies).dropna(subset=["success_once"])
    figure = Figure(figsize=(1.6 + 0.9 * len(policies), 3.0), layout="constrained")
    axes = figure.add_subplot()
    colors = [f"C{policies.index(p) % 10}" for p in rows.index]
    rates = 100 * rows["success_once"]
    errors = [rates - 100 * rows["ci_low"], 100 * rows["ci_high"] - rates]
    axes.bar(rows.index, rates, yerr=errors, capsize=5, color=colors)
    for x, (rate, n) in enumerate(zip(rates, rows["episodes"])):
        axes.annotate(f"{rate:.0f}%\nn={n:.0f}", (x, rate), ha="center", va="bottom", fontsize=8,
                      xytext=(0, 2), textcoords="offset points")
    axes.set_ylim(0, 115)
    axes.set_yticks(range(0, 101, 25))
    axes.set_ylabel("success_once (%)")
    axes.set_title(column, fontsize=10)
    axes.tick_params(axis="x", labelsize=8, labelrotation=20)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def axis_chart(summary: pd.DataFrame) -> str:
    """Per robustness axis, the mean paired drop in success_once with its 95% (MOVER) interval; an SVG data URI."""
    figure = Figure(figsize=(1.6 + 0.9 * len(summary), 3.0), layout="constrained")
    axes = figure.add_subplot()
    drops = 100 * summary["diff"]
    errors = [drops - 100 * summary["diff_low"], 100 * summary["diff_high"] - drops]
    axes.bar(summary["axis"], drops, yerr=errors, capsize=5, color=["C3" if s else "C7" for s in summary["significant"]])
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_ylim(-105, 35)
    axes.set_ylabel("perturbed - nominal (pts)")
    axes.set_title("mean drop per axis (red: interval excludes 0)", fontsize=9)
    axes.tick_params(axis="x", labelsize=8, labelrotation=20)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def clips(episodes: pd.DataFrame, page_dir: Path) -> dict[str, list[Clip]]:
    """task column -> recorded episodes of the runs that count, by policy then episode index."""
    if "video" not in episodes:
        return {}
    recorded = episodes[episodes["video"].notna()].sort_values(["column", "policy", "episode", "evaluation"])
    found: dict[str, list[Clip]] = {}
    for row in recorded.itertuples():
        src = Path(os.path.relpath(Path(row.run_dir).resolve() / row.video, page_dir)).as_posix()
        found.setdefault(row.column, []).append(Clip(row.policy, int(row.episode), bool(row.success_once), src,
                                                     int(getattr(row, "evaluation", 1))))
    return found


def policy_comparisons(board: Leaderboard) -> list[ComparisonSection]:
    """`bench compare` between every two policies of each leaderboard table (each policy's run with the most counted
    episodes there), on the runs already in memory; a pair whose runs were not evaluated the same way gets the
    reason instead of a table."""
    sections = []
    for i, table in enumerate(board.tables):
        runs = {policy: board.runs[group["run_dir"].value_counts().index[0]]
                for policy, group in table.episodes.groupby("policy")}
        for a, b in itertools.combinations(sorted(runs), 2):
            title = f"{b} (B) vs {a} (A)" + (f" - evaluation {i + 1}" if len(board.tables) > 1 else "")
            try:
                comparison = compare(runs[a], runs[b])
            except BenchError as e:
                sections.append(ComparisonSection(title, pd.DataFrame(), (f"not compared: {e}",)))
                continue
            notes = (f"A: {runs[a].path}", f"B: {runs[b].path}", *comparison.notes, LEGEND)
            sections.append(ComparisonSection(title, comparison_display(comparison.table), notes))
    return sections


def robustness_sections(board: Leaderboard) -> list[ComparisonSection]:
    """Per run with robustness variants and their nominal tasks: each variant against its nominal twins
    (`bench.robustness`), and the mean drop per axis."""
    sections = []
    for run in board.runs.values():
        table = robustness.robustness_table(run)
        if not table.empty:
            sections.append(ComparisonSection(f"robustness: {run.label}, nominal (A) vs perturbed (B)",
                                              robustness.display(table),
                                              (*robustness.summary_lines(table), robustness.LEGEND),
                                              axis_chart(robustness.axis_summary(table))))
    return sections


def render_report(board: Leaderboard, out: Path, comparisons: Sequence[ComparisonSection] = ()) -> str:
    """The page for a leaderboard, as it will be written to `out` (video paths are relative to it)."""
    tables = []
    for i, table in enumerate(board.tables):
        counted = table.board
        policies = sorted(counted["policy"].unique())
        columns = list(dict.fromkeys(counted.sort_values("column")["column"]))
        tables.append({"title": table_title(board, i), "display": leaderboard_display(counted),
                       "plots": {column: success_plot(counted, column, policies) for column in columns}})
    episodes = pd.concat([t.episodes.assign(evaluation=i + 1) for i, t in enumerate(board.tables)], ignore_index=True)
    runs = (episodes.groupby("run_dir", sort=True)
            .agg(policy=("policy", "first"), run_id=("run_id", "first"), tasks=("column", "unique"),
                 episodes=("episode", "size"), evaluation=("evaluation", "first"))
            .reset_index())
    environment = jinja2.Environment(loader=jinja2.PackageLoader("bench", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.get_template("report.html.j2").render(
        root=board.root, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        confidence=f"{CONFIDENCE:.0%}", notices=notices(board), tables=tables, comparisons=comparisons,
        clips=clips(episodes, out.resolve().parent), runs=runs, several=len(tables) > 1,
    )


def write_report(board: Leaderboard, out: Path, comparisons: Sequence[ComparisonSection] = ()) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(board, out, comparisons))
    return out
