"""Choosing the physics each task runs on, for every task before anything starts (recorded per task), and how
many env slots by default.

GPU physics (`physx_cuda`, N sub-scenes in one process) when it can start and the task can be pinned on it (its
spec's `gpu_pinnable`); CPU worker processes otherwise. The plan is a pure function of the tasks, the requested
backend and whether GPU physics can start, so it is tested without a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.envs.base import BatchedEnvs
from bench.envs.cpu_workers import CpuWorkerEnvs
from bench.envs.gpu import GpuEnvs, gpu_physics_status
from bench.errors import BenchError
from bench.tasks import TaskSpec

REQUESTS = ("auto", "gpu", "cpu")


@dataclass(frozen=True)
class PhysicsPlan:
    backends: dict[str, str]  # task id -> "gpu" or "cpu"
    why: dict[str, str]  # task id -> why, in words


def summary(backends: dict[str, str], why: dict[str, str]) -> str:
    """Which tasks run where, and why, in one line."""
    groups: dict[tuple[str, str], list[str]] = {}
    for task, backend in backends.items():
        groups.setdefault((backend, why[task]), []).append(task)
    return "; ".join(f"{'GPU physics' if backend == 'gpu' else 'CPU workers'} for {', '.join(ids)} ({reason})"
                     for (backend, reason), ids in groups.items())


def plan_physics(tasks: list[TaskSpec], requested: str, gpu: tuple[bool, str] | None = None) -> PhysicsPlan:
    """Each task's backend. `gpu` is (can start, why) as `gpu_physics_status()` says; probed here when needed."""
    if requested not in REQUESTS:
        raise BenchError(f"unknown --sim-backend '{requested}': use {', '.join(REQUESTS)}")
    if requested == "cpu":
        return PhysicsPlan({t.id: "cpu" for t in tasks}, {t.id: "requested" for t in tasks})
    ok, status = gpu if gpu is not None else gpu_physics_status()
    if requested == "gpu" and not ok:
        raise BenchError(f"--sim-backend gpu cannot start: {status}; or use --sim-backend cpu")
    backends, why = {}, {}
    for task in tasks:
        if ok and task.gpu_pinnable:
            backends[task.id], why[task.id] = "gpu", status
        elif ok:
            backends[task.id], why[task.id] = "cpu", ("its task file sets gpu_pinnable = false: part of its initial "
                                                      "state is drawn when the scene is built")
        else:
            backends[task.id], why[task.id] = "cpu", f"GPU physics unavailable: {status}"
    return PhysicsPlan(backends, why)


def open_physics(backend: str, num_envs: int, worker_timeout: float, processes: int | None = None) -> BatchedEnvs:
    """N env slots on `backend`; CPU workers (`processes` of them, default one per core) start importing in the
    background at once."""
    if backend == "gpu":
        return GpuEnvs(num_envs)
    return CpuWorkerEnvs(num_envs, step_timeout_s=worker_timeout, processes=processes)


def default_num_envs() -> int:
    return max(1, min(os.cpu_count() or 1, 16))
