"""Ray: the pending episodes as shards (a task and some of its episodes), each a Ray task with its own environments
and policy, streaming its waves' records back to the driver, which alone writes the run folder.

A shard is a streaming generator running `engine.evaluate`, so a shard computes exactly what a local run does:
episodes are pinned by (seed, task, index) and policies draw their randomness per episode, so per-episode results do
not depend on the sharding. Every shard plans the physics of all the run's tasks and reports it with its policy's
description and package versions, so the driver can check that all shards evaluate the same way. Ray re-runs a shard
whose worker process died (`max_retries`); the records it sends again are dropped by the driver, so every episode is
written once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.config import RunConfig
from bench.engine import evaluate
from bench.errors import BenchError
from bench.events import Event, Started, StepCounter, Wave
from bench.policies import PolicyPreset
from bench.tasks import Episode, TaskSpec

SHARD_RETRIES = 3  # attempts after the first, for shards whose Ray worker died


@dataclass(frozen=True)
class Shard:
    task: TaskSpec
    episodes: tuple[Episode, ...]


def plan_shards(tasks: list[TaskSpec], pending: dict[str, list[Episode]], shard_episodes: int | None) -> list[Shard]:
    """Each task's pending episodes, cut into shards of `shard_episodes` (default: one shard per task)."""
    shards = []
    for task in tasks:
        episodes = pending[task.id]
        size = shard_episodes or max(1, len(episodes))
        shards += [Shard(task, tuple(episodes[i:i + size])) for i in range(0, len(episodes), size)]
    return shards or [Shard(tasks[0], ())]  # nothing left (a finished run resumed): one shard checks the contract


def _run_shard(config: RunConfig, preset: PolicyPreset, tasks: list[TaskSpec], shard: Shard, num_envs: int,
               run_dir: Path) -> Iterator[Event]:
    """Body of the Ray task: `engine.evaluate` of one task's episodes (every task of the run is planned and checked,
    so the shard's description covers the whole run); its Started event says where it ran."""
    import ray

    node = {"node_id": ray.get_runtime_context().get_node_id(), "host": os.uname().nodename, "pid": os.getpid()}
    pending = {task.id: list(shard.episodes) if task.id == shard.task.id else [] for task in tasks}
    for event in evaluate(config, preset, tasks, pending, _slots(num_envs, shard), run_dir):
        yield replace(event, node=node) if isinstance(event, Started) else event


def _slots(num_envs: int, shard: Shard) -> int:
    return max(1, min(num_envs, len(shard.episodes)))


@dataclass
class RayExecutor:
    """Runs a run's shards on a Ray cluster (a `bench.events.Executor`); `layout()` and `log()` go into the
    manifest."""

    address: str | None
    shard_log: list[dict] = field(default_factory=list)

    @classmethod
    def connect(cls, config: RunConfig) -> RayExecutor:
        try:
            import ray
        except ImportError:
            raise BenchError("--ray needs Ray: pip install -e '.[ray]'") from None
        if not ray.is_initialized():
            try:
                if config.ray_address:  # its nodes must have bench (and the policy's packages) installed
                    ray.init(address=config.ray_address, log_to_driver=False, logging_level=logging.ERROR)
                else:  # a local cluster on this machine's cores, importing what this process imports
                    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise BenchError(f"cannot join the Ray cluster at {config.ray_address or 'a new local one'}: {e}; "
                                 "start it with `ray start --head` or drop --ray-address") from None
        return cls(config.ray_address)

    def layout(self) -> dict:
        import ray

        nodes = [{"node_id": n["NodeID"], "host": n.get("NodeManagerHostname"), "address": n.get("NodeManagerAddress"),
                  "resources": n.get("Resources", {})} for n in ray.nodes() if n.get("Alive")]
        return {"address": self.address or "local", "ray": ray.__version__, "nodes": nodes,
                "resources": ray.cluster_resources()}

    def log(self) -> dict:
        return {"shards": self.shard_log}

    def evaluate(self, config: RunConfig, preset: PolicyPreset, tasks: list[TaskSpec],
                 pending: dict[str, list[Episode]], num_envs: int, run_dir: Path,
                 on_step: StepCounter) -> Iterator[Event]:
        """The events of every shard, as they arrive (shards run concurrently, as the cluster's resources allow);
        a shard's env steps are counted when its wave arrives."""
        import ray

        remote = ray.remote(_run_shard)
        streams = {}
        counted: set[tuple[str, int]] = set()
        for shard in plan_shards(tasks, pending, config.shard_episodes):  # a CPU per env worker of the shard
            options = remote.options(num_cpus=_slots(num_envs, shard), num_gpus=config.shard_gpus,
                                     max_retries=SHARD_RETRIES)
            streams[options.remote(config, preset, tasks, shard, num_envs, run_dir)] = shard
        try:
            while streams:
                ready, _ = ray.wait(list(streams), num_returns=1)
                stream = ready[0]
                try:
                    event = ray.get(next(stream))
                except StopIteration:
                    del streams[stream]
                    continue
                except ray.exceptions.RayTaskError as e:  # a BenchError in a shard reads as in a local run
                    if isinstance(e.cause, BenchError):
                        raise e.cause from None
                    raise
                if isinstance(event, Started):
                    shard = streams[stream]
                    self.shard_log.append({"task": shard.task.id, "episodes": [e.index for e in shard.episodes],
                                           **event.node})
                elif isinstance(event, Wave):
                    for record in event.records:  # a retried shard sends its episodes again: count them once
                        if (record["task"], record["episode"]) not in counted:
                            counted.add((record["task"], record["episode"]))
                            on_step(record["task"], record["steps"])
                yield event
        finally:
            for stream in streams:
                ray.cancel(stream, force=True)
