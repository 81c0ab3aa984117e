"""The harness against the sequential loop people write by hand, on the same tasks and episodes, in one process.

    python benchmarks/end_to_end.py --policy benchmarks/pi05-random.toml --tokenizer T --norm-stats N \\
        --tasks PickCube-v1,PushCube-v1 --episodes 32 --num-envs 32          # GPU machine, full-size Pi0.5
    python benchmarks/end_to_end.py --quick                                  # tiny Pi0.5 on CPU, about a minute

Reference loop: one ManiSkill env in this process (CPU physics, the same task spec but ManiSkill's scene as users
build it: every camera rendered every step, the wrist camera's D415 housing drawn), batch-1 inference with the same
policy object, one query per executed chunk (`--replan-steps` actions of each chunk, as the harness). The
harness: `bench run` with --num-envs env slots (worker processes, batched inference, two lanes overlapping
simulation and inference). Both run the same pinned episodes, so their success flags must agree; the ratio of
their wall times (everything from building the policy to the last episode) is the speed-up.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.envs import flatten_obs, make_maniskill_env
from bench.policies import EpisodeContext, build_policy, resolve_preset
from bench.config import RunConfig
from bench.runner import run
from bench.tasks import DEFAULT_TASKS_DIR, episodes_for, load_suite


@dataclass
class ReferenceTimes:
    """Where the hand-written loop's time went: building the policy once, each task's env, each episode."""

    startup_s: float = 0.0
    env_s: dict[str, float] = field(default_factory=dict)  # task -> creating its env
    episode_s: dict[str, list[float]] = field(default_factory=dict)  # task -> each episode's reset and steps

    def scaled(self, episodes: int) -> float:
        """The loop's cost for `episodes` per task: linear in episodes, start-up and env creation counted once."""
        return self.startup_s + sum(self.env_s[t] + episodes * float(np.mean(e)) for t, e in self.episode_s.items())


def reference_loop(config: RunConfig) -> tuple[float, dict[tuple[str, int], bool], ReferenceTimes]:
    """(wall s, {(task, episode): success_once}, times) of the hand-written loop: one env, batch 1, one query per
    chunk."""
    started = time.perf_counter()
    suite = load_suite(config.tasks_dir)
    preset = resolve_preset(config.policy, config.presets_dir).with_overrides(
        tokenizer=config.tokenizer, norm_stats=config.norm_stats)
    policy = build_policy(preset, num_slots=1, seed=config.seed)
    times = ReferenceTimes(startup_s=time.perf_counter() - started)
    success = {}
    for task in suite.resolve(config.tasks):
        created = time.perf_counter()
        env = make_maniskill_env(replace(task, hidden_links=()), num_envs=1, sim_backend="physx_cpu")
        low, high = (bound.reshape(-1) for bound in (env.action_space.low, env.action_space.high))
        times.env_s[task.id] = time.perf_counter() - created
        times.episode_s[task.id] = []
        for episode in episodes_for(task.id, config.seed, config.episodes):
            episode_started = time.perf_counter()
            obs, _ = env.reset(seed=episode.seed)
            policy.reset(0, EpisodeContext(task, episode, low, high))
            queue: list[np.ndarray] = []
            succeeded = False
            for _ in range(task.max_steps):
                if not queue:
                    queue = list(policy.act(flatten_obs(obs), np.array([0]))[0][: config.replan_steps])
                obs, _, _, _, info = env.step(queue.pop(0).astype(np.float32))
                succeeded |= bool(info["success"][0])
            success[(task.id, episode.index)] = succeeded
            times.episode_s[task.id].append(time.perf_counter() - episode_started)
            print(f"reference: {task.id} episode {episode.index} done at {time.perf_counter() - started:.1f} s",
                  flush=True)
        env.close()
    wall = time.perf_counter() - started
    del policy  # its GPU memory (weights, CUDA graphs) goes back before bench run's workers take theirs
    _free_gpu_memory()
    return wall, success, times


def _free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def harness(config: RunConfig) -> tuple[float, dict[tuple[str, int], bool], float]:
    """(wall s, {(task, episode): success_once}, env steps/s of the episodes) of `bench run`."""
    started = time.perf_counter()
    outcome = run(config, Console(quiet=True))
    wall = time.perf_counter() - started
    episodes = outcome.episodes
    success = {(r.task, int(r.episode)): bool(r.success_once) for r in episodes.itertuples()}
    waves = episodes.drop_duplicates(["task", "wall_time_s"])  # episodes of a wave share its wall time
    return wall, success, float(episodes["steps"].sum() / waves["wall_time_s"].sum())


def quick_setup(work: Path) -> dict:
    """Tiny random Pi0.5 on CPU, stand-in tokenizer and norm stats, PickCube-v1 cut to 10 steps."""
    import subprocess
    import sys

    subprocess.run([sys.executable, str(Path(__file__).with_name("pi_fixtures.py")), str(work)], check=True)
    preset = work / "pi05-tiny.toml"
    preset.write_text('plugin = "pi"\n[params]\nmodel = "pi05"\nbackend = "lerobot"\ntiny = true\n'
                      'dtype = "float32"\ndevice = "cpu"\n')
    tasks = work / "tasks"
    shutil.copytree(DEFAULT_TASKS_DIR, tasks)
    spec = tasks / "PickCube-v1.toml"
    spec.write_text(spec.read_text().replace("max_steps = 100", "max_steps = 10"))
    return {"policy": str(preset), "tokenizer": str(work / "tokenizer.model"),
            "norm_stats": str(work / "norm_stats.json"), "tasks": "PickCube-v1", "episodes": 2, "num_envs": 2,
            "tasks_dir": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="benchmarks/pi05-random.toml")
    parser.add_argument("--tokenizer")
    parser.add_argument("--norm-stats")
    parser.add_argument("--tasks", default="PickCube-v1,PushCube-v1")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--replan-steps", type=int, default=5)
    parser.add_argument("--scale-to", type=int, default=100, metavar="E",
                        help="also print the reference loop's cost scaled to E episodes per task")
    parser.add_argument("--reference-only", action="store_true",
                        help="only the reference loop (its per-episode cost, to scale; bench run measured elsewhere)")
    parser.add_argument("--quick", action="store_true", help="tiny Pi0.5 on CPU, 2 episodes of 10 steps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = {"policy": args.policy, "tokenizer": args.tokenizer, "norm_stats": args.norm_stats,
                    "tasks": args.tasks, "episodes": args.episodes, "num_envs": args.num_envs}
        if args.quick:
            settings.update(quick_setup(work))
        config = RunConfig(**settings, replan_steps=args.replan_steps, sim_backend="cpu", output=work / "runs",
                           run_id="harness")
        ref_wall, ref_success, times = reference_loop(config)
        print(f"reference loop: {ref_wall:.1f} s", flush=True)
        if not args.reference_only:
            wall, success, steps_per_s = harness(config)
            print(f"bench run: {wall:.1f} s", flush=True)
        max_steps = {t: load_suite(config.tasks_dir).tasks[t].max_steps for t in times.episode_s}
    steps = sum(max_steps[t] for t, _ in ref_success)
    in_episodes = steps / sum(map(sum, times.episode_s.values()))
    print(f"{date.today()}, machine {platform.node()}; policy {config.policy}, tasks {config.tasks}, "
          f"{config.episodes} episodes each, replan every {config.replan_steps} steps")
    print("| task | reference: env s | reference: s per episode (mean of N) |\n|---|---|---|")
    for task, durations in times.episode_s.items():
        print(f"| {task} | {times.env_s[task]:.1f} | {np.mean(durations):.2f} ({len(durations)}) |")
    print(f"reference start-up (policy build) {times.startup_s:.1f} s; scaled to {args.scale_to} episodes per task: "
          f"{times.scaled(args.scale_to):.1f} s (scaled, not measured)")
    print("| loop | env slots | policy batch | wall s | env steps/s | in episodes | success |\n"
          "|---|---|---|---|---|---|---|")
    print(f"| sequential reference | 1 | 1 | {ref_wall:.1f} | {steps / ref_wall:.1f} | {in_episodes:.1f} | "
          f"{sum(ref_success.values())}/{len(ref_success)} |")
    if args.reference_only:
        return
    agree = sum(success[key] == ref_success[key] for key in success)
    print(f"| bench run | {config.num_envs} | up to {(config.num_envs + 1) // 2} | {wall:.1f} | {steps / wall:.1f} "
          f"| {steps_per_s:.1f} (in waves) | {sum(success.values())}/{len(success)} |")
    print(f"speed-up {ref_wall / wall:.1f}x end to end, {steps_per_s / in_episodes:.1f}x inside waves (bench's env "
          f"steps/s in waves over the reference's inside its episodes); success flags agree on "
          f"{agree}/{len(success)} episodes")


if __name__ == "__main__":
    main()
