"""Environment steps/s of the lockstep backends (zero actions; both policy cameras rendered every K-th step).

    python benchmarks/env_throughput.py --backend cpu --num-envs 1 2 4          # CPU worker processes
    python benchmarks/env_throughput.py --num-envs 32 --processes 16            # 2 envs per process
    python benchmarks/env_throughput.py --backend gpu --num-envs 16 64 256      # ManiSkill GPU physics
    python benchmarks/env_throughput.py --observe-every 1 5 0                   # cameras every step, every 5th, never
    python benchmarks/env_throughput.py --draw-hidden --observe-every 1 5 0     # with the D415 the suite hides
    python benchmarks/env_throughput.py --quick                                 # one short CPU point

Prints one Markdown row per (backend, N, K): env steps/s counts every env's step (N per lockstep step). Every
step computes physics, reward and success; K = 5 is a Pi policy replanning every 5 steps (bench's default), whose
cameras render only on the steps it is asked for a chunk (`bench.engine.Observer`); K = 0 is a policy that reads
no camera (expert, random, zero).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import numpy as np

from bench.envs import CpuWorkerEnvs, GpuEnvs, gpu_physics_status
from bench.tasks import episodes_for, load_suite


def measure(backend: str, num_envs: int, task_id: str, steps: int, torch_threads: int | None = 1,
            observe_every: int = 1, processes: int | None = None, draw_hidden: bool = False) -> dict:
    spec = load_suite().tasks[task_id]
    if draw_hidden:  # what the task drew before the suite hid links (the wrist camera's D415 housing)
        spec = dataclasses.replace(spec, hidden_links=())
    started = time.perf_counter()
    if backend == "cpu":
        envs = CpuWorkerEnvs(num_envs, torch_threads, processes=min(processes, num_envs) if processes else None)
    else:
        envs = GpuEnvs(num_envs)
    with envs:
        low, _ = envs.start_task(spec)
        envs.reset([e.seed for e in episodes_for(task_id, 0, num_envs)])
        startup = time.perf_counter() - started
        actions = np.zeros((num_envs, len(low)), np.float32)
        for _ in range(3):  # warm-up: first renders compile shaders
            envs.step(actions)
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            envs.step(actions, observe=np.full(num_envs, observe_every > 0 and step % observe_every == 0))
        elapsed = time.perf_counter() - t0
    return {"backend": backend, "num_envs": num_envs, "processes": getattr(envs, "processes", None),
            "steps_per_s": num_envs * steps / elapsed, "lockstep_ms": 1000 * elapsed / steps, "startup_s": startup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--task", default="PickCube-v1")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--worker-threads", type=int, default=1,
                        help="torch threads per CPU worker (0: torch's default, one per core)")
    parser.add_argument("--processes", type=int, default=0,
                        help="CPU worker processes hosting the N envs (0: as bench run, one per core)")
    parser.add_argument("--observe-every", type=int, nargs="+", default=[1],
                        help="render the cameras every K-th step (0: never, physics alone)")
    parser.add_argument("--draw-hidden", action="store_true",
                        help="draw the links the suite hides (hidden_links: the D415), to measure what hiding saves")
    parser.add_argument("--quick", action="store_true", help="one CPU point, N=2, 10 steps (about a minute)")
    args = parser.parse_args()
    if args.quick:
        args.backend, args.num_envs, args.steps = "cpu", [2], 10
    if args.backend == "gpu":
        ok, why = gpu_physics_status()
        if not ok:
            print(f"GPU physics cannot start: {why}")
            return
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}; task {args.task}, "
          f"{args.worker_threads or 'default'} torch thread(s) per worker, {args.steps} lockstep steps after 3 "
          f"warm-up steps{'; the links the suite hides drawn' if args.draw_hidden else ''}")
    print("| backend | N | processes | cameras every | env steps/s | ms per lockstep step | startup s |\n"
          "|---|---|---|---|---|---|---|")
    for n in args.num_envs:
        for k in args.observe_every:
            r = measure(args.backend, n, args.task, args.steps, args.worker_threads or None, k, args.processes or None,
                        args.draw_hidden)
            print(f"| {r['backend']} | {n} | {r['processes'] or '-'} | {k or 'never'} | {r['steps_per_s']:.1f} | "
                  f"{r['lockstep_ms']:.1f} | {r['startup_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
