"""Choosing a backend: GPU physics where it can start, CPU workers otherwise; how many env slots by default."""

from __future__ import annotations

import os

from bench.envs.base import BatchedEnvs
from bench.envs.cpu_workers import CpuWorkerEnvs
from bench.envs.gpu import GpuEnvs, gpu_physics_status
from bench.errors import BenchError


def open_envs(sim_backend: str, num_envs: int, step_timeout_s: float | None = None) -> tuple[BatchedEnvs, str]:
    """Opens the requested backend ("auto", "gpu" or "cpu") and says why it was chosen.

    `step_timeout_s`: how long CPU workers may take to answer a step or render before they are treated as dead
    (None: `cpu_workers.DEFAULT_STEP_TIMEOUT_S`; building a scene gets at least as long). GPU physics runs in this
    process and has no workers to wait for.
    """
    if sim_backend not in ("auto", "gpu", "cpu"):
        raise BenchError(f"unknown --sim-backend '{sim_backend}': use auto, gpu or cpu")
    if sim_backend in ("auto", "gpu"):
        ok, why = gpu_physics_status()
        if ok:
            return GpuEnvs(num_envs), f"GPU physics: {why}"
        if sim_backend == "gpu":
            raise BenchError(f"--sim-backend gpu cannot start: {why}; or use --sim-backend cpu")
        reason = f"GPU physics unavailable ({why})"
    else:
        reason = "requested"
    return CpuWorkerEnvs(num_envs, step_timeout_s=step_timeout_s), f"CPU workers ({num_envs}): {reason}"


def default_num_envs() -> int:
    return max(1, min(os.cpu_count() or 1, 16))
