"""`bench report`: one static HTML page over the runs under a folder: leaderboard, plots, comparisons, videos.

The page needs no server and no network: plots are inline SVG (base64), styles are inline, and videos are
linked by a path relative to the page, so the page and the run folders can be copied or served together.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from bench import __version__
from bench.report import CONFIDENCE, board_of, latest_episodes, leaderboard_display

REPORT = "report.html"


@dataclass(frozen=True)
class ComparisonSection:
    """A comparison computed elsewhere (`bench compare`): a heading and its display table, one row per task.

    A `verdict` column, if present, is coloured (better / worse / anything else)."""

    title: str
    table: pd.DataFrame
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Clip:
    policy: str
    episode: int
    success: bool
    src: str  # relative to the page


def success_plot(board: pd.DataFrame, task: str, policies: list[str]) -> str:
    """Bar chart of success_once per policy on one task, Wilson interval error bars; an SVG data URI."""
    rows = board[board["task"] == task].set_index("policy").reindex(policies).dropna(subset=["success_once"])
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
    axes.set_title(task, fontsize=10)
    axes.tick_params(axis="x", labelsize=8, labelrotation=20)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def clips(episodes: pd.DataFrame, page_dir: Path) -> dict[str, list[Clip]]:
    """task -> recorded episodes of the runs that count, by policy then episode index."""
    if "video" not in episodes:
        return {}
    recorded = episodes[episodes["video"].notna()].sort_values(["task", "policy", "episode"])
    found: dict[str, list[Clip]] = {}
    for row in recorded.itertuples():
        src = Path(os.path.relpath(Path(row.run_dir).resolve() / row.video, page_dir)).as_posix()
        found.setdefault(row.task, []).append(Clip(row.policy, int(row.episode), bool(row.success_once), src))
    return found


def render_report(root: Path, out: Path, comparisons: Sequence[ComparisonSection] = ()) -> str:
    """The page for the runs under `root`, as it will be written to `out` (video paths are relative to it)."""
    episodes = latest_episodes(root)
    board = board_of(episodes)
    policies = sorted(board["policy"].unique())
    tasks = list(dict.fromkeys(board["task"]))
    runs = (episodes.groupby("run_dir", sort=True)
            .agg(policy=("policy", "first"), run_id=("run_id", "first"), tasks=("task", "unique"),
                 episodes=("episode", "size"))
            .reset_index())
    environment = jinja2.Environment(loader=jinja2.PackageLoader("bench", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.get_template("report.html.j2").render(
        root=root, generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        confidence=f"{CONFIDENCE:.0%}", leaderboard=leaderboard_display(board), tasks=tasks,
        plots={task: success_plot(board, task, policies) for task in tasks},
        comparisons=comparisons, clips=clips(episodes, out.resolve().parent), runs=runs,
    )


def write_report(root: Path, out: Path, comparisons: Sequence[ComparisonSection] = ()) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(root, out, comparisons))
    return out
