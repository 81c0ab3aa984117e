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
from dataclasses import asdict, dataclass, field, replace
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
from bench.errors import BenchError, unknown_name
from bench.policies import (DEFAULT_PRESETS_DIR, EpisodeContext, Policy, PolicyPreset, build_policy,
                             resolve_preset)
from bench.report import print_table, spread_display, spread_table, to_markdown, write_task_leaderboard
from bench.results import RunWriter, ensure_writable, new_run_id
from bench.tasks import DEFAULT_TASKS_DIR, Episode, TaskSpec, TaskSuite, episodes_for, load_suite

RECORDED_PACKAGES = ("bench", "mani_skill", "sapien", "gymnasium", "torch", "numpy",
                     "lerobot", "transformers", "jax", "rpent-openpi", "sentencepiece")  # what Pi results depend on
DEFAULT_EPISODES = 50


@dataclass(frozen=True)
class RunConfig:
    """Evaluation settings; everything here is written into the manifest."""

    policy: str = "expert"
    """Policy preset (policies/<name>.toml), preset file path, or plugin name; see `bench policies`."""
    tasks: str = "all"
    """A suite (all, extras, smoke), or comma-separated task ids; see `bench tasks`."""
    suite: str | None = None
    """A named suite (e.g. smoke) instead of --tasks: its tasks and, unless --episodes is given, its episodes."""
    episodes: int | None = None
    """Episodes per task (default: the suite's count if it has one, else 50)."""
    num_envs: int = field(default_factory=default_num_envs)
    """Episodes run in parallel (env slots)."""
    seed: int = 0
    """Run seed: episode i of task T starts from a state derived from (seed, T, i)."""
    sim_backend: Literal["auto", "gpu", "cpu"] = "auto"
    """Physics: GPU (physx_cuda) when it can start, else CPU worker processes."""
    replan_steps: int = 5
    """Actions executed from each policy chunk before the policy is queried again."""
    output: Path = Path("results")
    """Folder that receives the run folder."""
    run_id: str | None = None
    """Name of the run folder (default: timestamp-policy-pid)."""
    baseline: Path | None = None
    """A stored baseline run folder: when this run completes, compare it with the baseline (`bench compare`)."""
    fail_on_regression: bool = False
    """With --baseline: exit 1 when this run is significantly worse than the baseline (a CI gate)."""
    margin: float = 0.0
    """With --baseline: smallest drop in success rate that counts as a regression (0.05 = 5 points)."""
    repeat: int = 1
    """Run the evaluation this many times with run seeds seed, seed+1, ... (run ids <run-id>-r0, -r1, ...) and
    report the spread of success rates: the noise floor of a result with this many episodes."""
    server: str | None = None
    """Policy server address for remote policies (overrides the preset's `server`)."""
    backend: str | None = None
    """Model backend for pi0/pi05: auto (from the checkpoint's layout), lerobot or openpi (overrides the preset)."""
    checkpoint: str | None = None
    """Model checkpoint folder (overrides the preset)."""
    tokenizer: str | None = None
    """PaliGemma SentencePiece model, paligemma_tokenizer.model (overrides the preset)."""
    norm_stats: str | None = None
    """State/action statistics the checkpoint was trained with (default: the checkpoint's own; openpi
    norm_stats.json or a lerobot normalizer .safetensors)."""
    tasks_dir: Path = DEFAULT_TASKS_DIR
    """Folder holding suite.toml and the task specs."""
    presets_dir: Path = DEFAULT_PRESETS_DIR
    """Folder holding the policy presets."""

    def resolve(self, suite: TaskSuite) -> "RunConfig":
        """The effective settings (what the manifest records): --suite expanded into tasks and episodes."""
        if self.suite is None:
            return replace(self, episodes=self.episodes or DEFAULT_EPISODES)
        if self.suite not in suite.suites:
            raise unknown_name("suite", self.suite, suite.suites, hint=" (see `bench tasks`)")
        if self.tasks != "all":
            raise BenchError(f"--suite {self.suite} and --tasks {self.tasks} both choose tasks: pass one of them")
        episodes = self.episodes or suite.suite_episodes.get(self.suite, DEFAULT_EPISODES)
        return replace(self, tasks=self.suite, episodes=episodes)

    def validate(self) -> None:
        for name in ("episodes", "num_envs", "replan_steps", "repeat"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise BenchError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.seed < 0:
            raise BenchError(f"--seed must be >= 0, got {self.seed}")


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


def _flat(value, prefix: str = "") -> dict:
    """Nested dicts as dotted keys, tuples as lists: JSON values that compare equal after a round trip."""
    if isinstance(value, dict):
        flat = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def _contract(config: RunConfig, suite_version: str, tasks: list[TaskSpec], preset: PolicyPreset,
              description: dict, sim_backend: str, packages: dict[str, str]) -> dict:
    """Everything that can change a result, in the form `bench compare` checks key by key.

    `evaluation` and `tasks` must agree between two runs for their numbers to be comparable; `policy` is what
    a comparison compares, so it is shown side by side, never refused. Episode counts, env slots, run id, host
    and times are left out: they do not change what an episode scores (common episode indices are paired).
    """
    return {
        "evaluation": {"suite_version": suite_version, "seed": config.seed, "replan_steps": config.replan_steps,
                       "sim_backend": sim_backend, "mani_skill": packages["mani_skill"],
                       "sapien": packages["sapien"]},
        "tasks": {t.id: _flat({k: v for k, v in asdict(t).items() if k != "id"}) for t in tasks},
        "policy": {"preset": preset.name, "plugin": preset.plugin, "preset_fingerprint": preset.fingerprint(),
                   **_flat(description)},
    }


def _manifest(config: RunConfig, run_id: str, suite: TaskSuite, tasks: list[TaskSpec], preset: PolicyPreset,
              policy: Policy, backend: str, backend_reason: str, num_envs: int) -> dict:
    """What produced the run, so that any number can be traced back and two runs checked for comparability."""
    packages = _package_versions()
    description = policy.describe()
    return {
        "run_id": run_id, "created": datetime.now(timezone.utc).isoformat(),
        "bench_version": __version__, "config": {**asdict(config), "num_envs_used": num_envs},
        "suite": {"version": suite.version, "fingerprint": suite.fingerprint(tasks),
                  "tasks": [asdict(t) for t in tasks]},
        "policy": {"name": preset.name, "plugin": preset.plugin, "preset": preset.source,
                   "params": preset.params, "fingerprint": preset.fingerprint(), "describe": description},
        "environments": {"backend": backend, "why": backend_reason, "num_envs": num_envs},
        "contract": _contract(config, suite.version, tasks, preset, description, backend, packages),
        "packages": packages, "git_revision": _git_revision(), "host": _host(),
    }


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
             bounds: tuple[np.ndarray, np.ndarray], on_step=None) -> list[dict]:
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
        if on_step:
            on_step(k)
    wall = time.perf_counter() - started
    return [
        {"task": task.id, "episode": e.index, "seed": e.seed, "success_once": bool(success_once[i]),
         "success_at_end": bool(out.success[i]), "first_success_step": int(first_success[i]),
         "steps": task.max_steps, "return": float(returns[i]), "wall_time_s": wall, "sim_time_s": sim_time,
         "policy_time_s": policy_time, "wave_size": k}
        for i, e in enumerate(wave)
    ]


def run(config: RunConfig, console: Console | None = None) -> RunOutcome:
    """Validates everything it can before the first episode, then evaluates and writes the run folder."""
    console = console or Console()
    config.validate()
    suite = load_suite(config.tasks_dir)
    config = config.resolve(suite)
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
                    writer = RunWriter(run_dir, _manifest(config, run_id, suite, tasks, preset, policy, envs.backend,
                                                          backend_reason, num_envs))
                chunker = ActionChunker(num_envs, config.replan_steps)
                episodes = episodes_for(task.id, config.seed, config.episodes)
                done = successes = steps = 0
                task_start = time.perf_counter()

                def count_steps(k, task_id=task.id):
                    nonlocal steps
                    steps += k
                    live.update(task_id, done, successes, steps / (time.perf_counter() - task_start))

                for first in range(0, len(episodes), num_envs):
                    for record in run_wave(envs, policy, chunker, task, episodes[first:first + num_envs], bounds,
                                           on_step=count_steps):
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


def run_repeats(config: RunConfig, console: Console | None = None) -> list[RunOutcome]:
    """`--repeat K`: K ordinary runs with run seeds seed, seed+1, ... (run ids <run-id>-r0, ...), then their spread.

    Separate run folders keep every repeat readable by `compare` and `leaderboard` as they are; the price is
    building the policy and environments K times.
    """
    if config.repeat == 1:
        return [run(config, console)]
    console = console or Console()
    config.validate()
    base = config.run_id or new_run_id(resolve_preset(config.policy, config.presets_dir).name)
    repeats = [replace(config, seed=config.seed + i, run_id=f"{base}-r{i}") for i in range(config.repeat)]
    for repeat in repeats:
        if (repeat.output / repeat.run_id).exists():
            raise BenchError(f"{repeat.output / repeat.run_id} already exists: choose another --run-id")
    outcomes = [run(repeat, console) for repeat in repeats]
    display = spread_display(spread_table([outcome.episodes for outcome in outcomes]))
    title = f"spread over {config.repeat} repeats (run seeds {config.seed}..{config.seed + config.repeat - 1})"
    path = config.output / f"{base}-spread.md"
    path.write_text(f"# {base}: {title}\n\n" + to_markdown(display))
    print_table(display, title, console)
    console.print(f"spread: {path}")
    return outcomes
