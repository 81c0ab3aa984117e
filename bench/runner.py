"""The runner: task specs -> environments -> policy -> action chunks -> environments -> episode records.

Episodes of a task run in waves of up to N (one per env slot), each for the task's whole step budget: the
evaluation recipe ManiSkill documents (no partial resets, success counted at any step and at the end).
"""

from __future__ import annotations

import getpass
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench import __version__
from bench.adapters import ActionChunker
from bench.envs import BatchedEnvs, default_num_envs, open_envs
from bench.errors import BenchError
from bench.policies import DEFAULT_PRESETS_DIR, EpisodeContext, Policy, build_policy, resolve_preset
from bench.report import write_task_leaderboard
from bench.results import RunWriter, ensure_writable, new_run_id
from bench.tasks import DEFAULT_TASKS_DIR, Episode, TaskSpec, episodes_for, load_suite
from bench.video import WaveVideos

RECORDED_PACKAGES = ("bench", "mani_skill", "sapien", "gymnasium", "torch", "numpy",
                     "lerobot", "transformers", "jax", "rpent-openpi", "sentencepiece")  # what Pi results depend on


@dataclass(frozen=True)
class RunConfig:
    """Evaluation settings; everything here is written into the manifest."""

    policy: str = "expert"
    """Policy preset (policies/<name>.toml), preset file path, or plugin name; see `bench policies`."""
    tasks: str = "all"
    """A suite (all, extras), or comma-separated task ids; see `bench tasks`."""
    episodes: int = 50
    """Episodes per task."""
    num_envs: int = field(default_factory=default_num_envs)
    """Episodes run in parallel (env slots)."""
    seed: int = 0
    """Run seed: episode i of task T starts from a state derived from (seed, T, i)."""
    sim_backend: Literal["auto", "gpu", "cpu"] = "auto"
    """Physics: GPU (physx_cuda) when it can start, else CPU worker processes."""
    replan_steps: int = 5
    """Actions executed from each policy chunk before the policy is queried again."""
    video: int = 0
    """Episodes per task to record as MP4 (the first ones by index), in <run>/videos/<task>/."""
    output: Path = Path("results")
    """Folder that receives the run folder."""
    run_id: str | None = None
    """Name of the run folder (default: timestamp-policy-pid)."""
    server: str | None = None
    """Policy server address for remote policies (overrides the preset's `server`)."""
    backend: str | None = None
    """Model backend for pi0/pi05: lerobot or openpi (overrides the preset)."""
    checkpoint: str | None = None
    """Model checkpoint folder (overrides the preset)."""
    tokenizer: str | None = None
    """PaliGemma SentencePiece model, paligemma_tokenizer.model (overrides the preset)."""
    norm_stats: str | None = None
    """norm_stats.json with the state/action statistics the checkpoint was trained with (overrides the preset)."""
    """Name of the run folder (default: timestamp-policy-pid)."""
    tasks_dir: Path = DEFAULT_TASKS_DIR
    """Folder holding suite.toml and the task specs."""
    presets_dir: Path = DEFAULT_PRESETS_DIR
    """Folder holding the policy presets."""

    def validate(self) -> None:
        for name in ("episodes", "num_envs", "replan_steps"):
            if getattr(self, name) <= 0:
                raise BenchError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        for name in ("seed", "video"):
            if getattr(self, name) < 0:
                raise BenchError(f"--{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class RunOutcome:
    run_dir: Path
    status: str
    episodes: pd.DataFrame
    table: pd.DataFrame | None


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git_revision() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _host() -> dict:
    return {"hostname": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "user": getpass.getuser()}


class _Live:
    """Rich progress: one bar per task with episodes done, success so far and env steps/s."""

    def __init__(self, console: Console, tasks: list[TaskSpec], episodes: int):
        self.progress = Progress(
            TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("success {task.fields[success]}"), TextColumn("{task.fields[rate]:>7.1f} steps/s"),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.bars = {t.id: self.progress.add_task(t.id, total=episodes, success="-", rate=0.0, start=False)
                     for t in tasks}

    def update(self, task_id: str, done: int, successes: int, steps_per_s: float) -> None:
        bar = self.bars[task_id]
        self.progress.start_task(bar)
        self.progress.update(bar, completed=done, success=f"{successes}/{done}" if done else "-", rate=steps_per_s)


def run_wave(envs: BatchedEnvs, policy: Policy, chunker: ActionChunker, task: TaskSpec, wave: list[Episode],
             bounds: tuple[np.ndarray, np.ndarray], on_step=None, videos: WaveVideos | None = None) -> list[dict]:
    """Runs up to N pinned episodes in lockstep for the task's full step budget; returns their records."""
    started = time.perf_counter()
    k = len(wave)
    obs = envs.reset([e.seed for e in wave])
    for slot, episode in enumerate(wave):
        policy.reset(slot, EpisodeContext(task, episode, *bounds))
        chunker.reset(slot)
    success_once = np.zeros(k, bool)
    first_success = np.full(k, -1)
    returns = np.zeros(k)
    policy_time = sim_time = 0.0
    if videos:
        videos.capture(envs.render, obs, 0, success_once, first_success)
    for step in range(task.max_steps):
        need = chunker.slots_needing_chunk(k)
        if len(need):
            t0 = time.perf_counter()
            chunks = policy.act({key: value[need] for key, value in obs.items()}, need)
            policy_time += time.perf_counter() - t0
            try:
                chunker.push(need, chunks, action_dim=len(bounds[0]), policy=policy.name)
            except ValueError as e:
                raise BenchError(str(e)) from None
        t0 = time.perf_counter()
        out = envs.step(chunker.pop(k))
        sim_time += time.perf_counter() - t0
        returns += out.reward
        first_success[out.success & ~success_once] = step + 1
        success_once |= out.success
        obs = out.obs
        if videos:
            videos.capture(envs.render, obs, step + 1, out.success, first_success)
        if on_step:
            on_step(k)
    wall = time.perf_counter() - started
    video_paths = videos.finish(success_once) if videos else {}
    return [
        {"task": task.id, "episode": e.index, "seed": e.seed, "success_once": bool(success_once[i]),
         "success_at_end": bool(out.success[i]), "first_success_step": int(first_success[i]),
         "steps": task.max_steps, "return": float(returns[i]), "wall_time_s": wall, "sim_time_s": sim_time,
         "policy_time_s": policy_time, "wave_size": k, "video": video_paths.get(i)}
        for i, e in enumerate(wave)
    ]


def run(config: RunConfig, console: Console | None = None) -> RunOutcome:
    """Validates everything it can before the first episode, then evaluates and writes the run folder."""
    console = console or Console()
    config.validate()
    suite = load_suite(config.tasks_dir)
    tasks = suite.resolve(config.tasks)
    preset = resolve_preset(config.policy, config.presets_dir).with_overrides(
        server=config.server, backend=config.backend, checkpoint=config.checkpoint, tokenizer=config.tokenizer,
        norm_stats=config.norm_stats)
    ensure_writable(config.output)
    num_envs = min(config.num_envs, config.episodes)
    policy = build_policy(preset, num_slots=num_envs, seed=config.seed)
    for task in tasks:
        policy.check_task(task)
    run_id = config.run_id or new_run_id(preset.name)
    run_dir = config.output / run_id
    if run_dir.exists():
        raise BenchError(f"{run_dir} already exists: choose another --run-id")

    envs, backend_reason = open_envs(config.sim_backend, num_envs)
    console.print(f"[bold]bench[/] {run_id}: policy {preset.name}, {len(tasks)} task(s) x {config.episodes} "
                  f"episodes; environments: {backend_reason}")
    writer = None
    status = "failed"
    episodes_table = table = None
    live = _Live(console, tasks, config.episodes)
    try:
        with envs, live.progress:
            for task in tasks:
                bounds = envs.start_task(task)
                if writer is None:  # the first task started: the configuration works, so open the run folder
                    writer = RunWriter(run_dir, {
                        "run_id": run_id, "created": datetime.now(timezone.utc).isoformat(),
                        "bench_version": __version__, "config": {**asdict(config), "num_envs_used": num_envs},
                        "suite": {"version": suite.version, "fingerprint": suite.fingerprint(tasks),
                                  "tasks": [asdict(t) for t in tasks]},
                        "policy": {"name": preset.name, "plugin": preset.plugin, "preset": preset.source,
                                   "params": preset.params, "fingerprint": preset.fingerprint(),
                                   "describe": policy.describe()},
                        "environments": {"backend": envs.backend, "why": backend_reason, "num_envs": num_envs},
                        "packages": _package_versions(), "git_revision": _git_revision(), "host": _host(),
                    })
                chunker = ActionChunker(num_envs, config.replan_steps)
                episodes = episodes_for(task.id, config.seed, config.episodes)
                done = successes = steps = 0
                task_start = time.perf_counter()

                def count_steps(k, task_id=task.id):
                    nonlocal steps
                    steps += k
                    live.update(task_id, done, successes, steps / (time.perf_counter() - task_start))

                for first in range(0, len(episodes), num_envs):
                    wave = episodes[first:first + num_envs]
                    with WaveVideos(run_dir, task, wave, keep=config.video) as videos:
                        records = run_wave(envs, policy, chunker, task, wave, bounds, count_steps, videos)
                    for record in records:
                        writer.append({"run_id": run_id, "policy": preset.name, **record})
                        done += 1
                        successes += record["success_once"]
                    live.update(task.id, done, successes, steps / (time.perf_counter() - task_start))
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if writer is not None:
            episodes_table = writer.finish(status)
            if not episodes_table.empty:
                title = f"{preset.name} - {run_id} ({status})"
                table = write_task_leaderboard(run_dir, episodes_table, title, console)
            console.print(f"results: {run_dir}")
    return RunOutcome(run_dir, status, episodes_table, table)
