"""The live display of a run: one progress bar per task with episodes done, success so far and env steps/s."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.tasks import TaskSpec


class LiveProgress:
    """Rich progress: one bar per task with episodes done, success so far and env steps/s."""

    def __init__(self, console: Console, tasks: list[TaskSpec], episodes: int | dict[str, int]):
        """`episodes`: per task, or one count for every task."""
        totals = episodes if isinstance(episodes, dict) else dict.fromkeys((t.id for t in tasks), episodes)
        self.progress = Progress(
            TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("success {task.fields[success]}"), TextColumn("{task.fields[rate]:>7.1f} steps/s"),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.bars = {t.id: self.progress.add_task(t.id, total=totals[t.id], success="-", rate=0.0, start=False)
                     for t in tasks}
        self.done = dict.fromkeys(self.bars, 0)
        self.successes = dict.fromkeys(self.bars, 0)
        self.steps = dict.fromkeys(self.bars, 0)
        self.since: dict[str, float] = {}

    def count_steps(self, task_id: str, k: int) -> None:
        self.since.setdefault(task_id, time.perf_counter())
        self.steps[task_id] += k
        self._show(task_id)

    def add(self, record: dict) -> None:
        self.done[record["task"]] += 1
        self.successes[record["task"]] += bool(record["success_once"])
        self._show(record["task"])

    def _show(self, task_id: str) -> None:
        bar, done = self.bars[task_id], self.done[task_id]
        elapsed = time.perf_counter() - self.since.get(task_id, time.perf_counter())
        self.progress.start_task(bar)
        self.progress.update(bar, completed=done, success=f"{self.successes[task_id]}/{done}" if done else "-",
                             rate=self.steps[task_id] / elapsed if elapsed > 0 else 0.0)


    def __enter__(self) -> "LiveProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
