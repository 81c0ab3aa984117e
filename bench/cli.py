"""Command line: `bench run | tasks | policies | leaderboard | report` (tyro subcommands)."""

from __future__ import annotations

import signal
import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import pandas as pd
import tyro
from rich.console import Console

from bench.errors import BenchError
from bench.html_report import REPORT, write_report
from bench.policies import DEFAULT_PRESETS_DIR, plugins, presets
from bench.report import leaderboard, leaderboard_display, print_table, to_markdown
from bench.runner import RunConfig, run
from bench.tasks import DEFAULT_TASKS_DIR, load_suite

console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: do not cut tables at 80


def run_command(config: Annotated[RunConfig, tyro.conf.arg(name="")]) -> int:
    """Evaluate a policy on tasks; results go to <output>/<run-id>/."""
    outcome = run(config, console)
    return 0 if outcome.status == "completed" else 1


def tasks_command(tasks_dir: Path = DEFAULT_TASKS_DIR) -> int:
    """List the task suite: suites, and each task's budget, robot, control mode and instruction."""
    suite = load_suite(tasks_dir)
    console.print(f"suite version {suite.version}")
    for name, ids in suite.suites.items():
        console.print(f"  [bold]{name}[/]: {', '.join(ids)}")
    columns = ["id", "max_steps", "robot", "control_mode", "control_freq", "image_size", "instruction"]
    rows = [{c: getattr(t, c) for c in columns} for t in suite.tasks.values()]
    print_table(pd.DataFrame(rows, columns=columns), "tasks", console)
    return 0


def policies_command(presets_dir: Path = DEFAULT_PRESETS_DIR) -> int:
    """List installed policy plugins (entry points `bench.policies`) and the presets in policies/."""
    installed = plugins()
    rows = [{"name": name, "kind": "plugin", "plugin": ep.value, "description": ""} for name, ep in installed.items()]
    rows += [{"name": p.name, "kind": "preset", "plugin": p.plugin, "description": p.description}
             for p in presets(presets_dir).values()]
    print_table(pd.DataFrame(rows, columns=["name", "kind", "plugin", "description"]), "policies", console)
    return 0


def leaderboard_command(root: Annotated[Path, tyro.conf.Positional] = Path("results"),
                        markdown: Path | None = None) -> int:
    """Aggregate the runs under ROOT into one policy x task table (success_once, 95% Wilson interval)."""
    if not root.exists():
        raise BenchError(f"{root} does not exist: pass the folder that holds your run folders")
    board = leaderboard(root)
    if board.empty:
        raise BenchError(f"no finished episodes under {root}: run `bench run` first")
    display = leaderboard_display(board)
    print_table(display, f"leaderboard: {root}", console)
    if markdown:
        markdown.write_text(to_markdown(display))
    return 0


def report_command(root: Annotated[Path, tyro.conf.Positional] = Path("results"), out: Path | None = None,
                   open_page: Annotated[bool, tyro.conf.arg(name="open")] = False) -> int:
    """Write one static HTML page for the runs under ROOT: leaderboard, plots per task, episode videos.

    Args:
        root: Folder holding run folders (or one run folder).
        out: Where to write the page (default ROOT/report.html); videos are linked relative to it.
        open_page: Open the page in the web browser.
    """
    if not root.exists():
        raise BenchError(f"{root} does not exist: pass the folder that holds your run folders")
    if leaderboard(root).empty:
        raise BenchError(f"no finished episodes under {root}: run `bench run` first")
    try:
        page = write_report(root, out or root / REPORT)
    except OSError as e:
        raise BenchError(f"cannot write the report to {e.filename}: {e.strerror}; pass --out with a writable path") from e
    console.print(f"report: {page}")
    if open_page:
        webbrowser.open(page.resolve().as_uri())
    return 0


COMMANDS = {
    "run": run_command,
    "tasks": tasks_command,
    "policies": policies_command,
    "leaderboard": leaderboard_command,
    "report": report_command,
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a run like Ctrl-C: finished episodes are kept
    try:
        code = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="bench")
    except BenchError as e:
        console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished episodes are saved")
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
