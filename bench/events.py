"""What an evaluation reports while it runs, and the interface of what runs it (locally or on a Ray cluster).

Events are small picklable dataclasses: they travel from Ray shards to the process that writes the run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.config import RunConfig
from bench.policies import PolicyPreset
from bench.tasks import Episode, TaskSpec


@dataclass(frozen=True)
class Started:
    """The policy is built, accepted every task, and the first task's environments are up: the run is real."""

    description: dict  # the policy's own description (checkpoint fingerprint, settings)
    backends: dict[str, str]  # task id -> physics backend ("gpu" or "cpu"), for every task of the run
    why: dict[str, str]  # task id -> why that backend
    packages: dict[str, str]  # package versions of the process that runs the episodes
    node: dict | None = None  # where a Ray shard runs: node id, host, pid
    policy_build_s: float | None = None  # s building the policy (the env workers start and build scenes meanwhile)
    env_processes: int | None = None  # CPU worker processes hosting the env slots (None: no task on CPU physics)


@dataclass(frozen=True)
class Wave:
    """The records of one wave's finished episodes (ok or error)."""

    task: str
    records: list[dict]


@dataclass(frozen=True)
class Done:
    restarts: int  # env workers restarted after dying


Event = Started | Wave | Done
StepCounter = Callable[[str, int], None]  # (task id, env steps done) for live progress


class Executor(Protocol):
    """Runs pending episodes and reports events; the runner writes them down whoever runs them."""

    def evaluate(self, config: RunConfig, preset: PolicyPreset, tasks: list[TaskSpec],
                 pending: dict[str, list[Episode]], num_envs: int, run_dir: Path,
                 on_step: StepCounter) -> Iterator[Event]:
        """Events until every pending episode is recorded; closing the iterator stops the work."""

    def layout(self) -> dict | None:
        """Where the episodes run, for the manifest (None: this process)."""

    def log(self) -> dict:
        """Extra manifest entries once the run ends (e.g. where each Ray shard ran)."""
