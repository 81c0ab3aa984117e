"""`bench record`: a policy rolled out on pinned episodes through the evaluation engine, written as a LeRobot
dataset (bench.datasets) with openpi and lerobot norm stats.

Episodes come from their own seed range, [2^31, 2^32) (`record_episodes`), which evaluation seeds (< 2^31) never
reach: a model trained on a recording is not evaluated on its own training episodes by accident. Each frame is
the observation a slot was in when an action was sent, seen through the layout preset's own Pi steps
(`pi_transforms.observation_steps`: what `bench run` feeds that policy), and the action as the controller took it
(`adapters.controller_action`). The dataset is written as LeRobot v2.1 episode by episode, valid after each; a
v3.0 dataset is converted from it at the end.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from rich.console import Console

from bench import __version__, contract
from bench.adapters import controller_action
from bench.atomic import write_json, write_text
from bench.config import RunConfig
from bench.datasets import convert
from bench.datasets.layout import FORMATS, KEYS, DatasetLayout, resolve_layout
from bench.datasets.read import BENCH_JSON, NORM_STATS, open_dataset
from bench.datasets.stats import OPENPI_BATCH_SIZE, openpi_norm_stats
from bench.datasets.v21 import VIDEO_CODEC, V21Writer, require_lerobot_datasets
from bench.doctor import probe_vulkan
from bench.engine import evaluate
from bench.envs import default_num_envs
from bench.envs.cpu_workers import DEFAULT_STEP_TIMEOUT_S
from bench.errors import BenchError
from bench.events import Started, Wave
from bench.policies import DEFAULT_PRESETS_DIR, PolicyPreset, preflight_policy, resolve_preset
from bench.policies import pi_transforms as transforms
from bench.progress import LiveProgress
from bench.results import probe_writable
from bench.tasks import DEFAULT_TASKS_DIR, Episode, TaskSpec, TaskSuite, episode_seed, load_suite
from bench.variants import instruction_for

RECORD_SEED_OFFSET = 2**31  # recording seeds: 2^31 + episode_seed(...), in [2^31, 2^32); evaluation's are < 2^31
ACTION_NOTE = ("the action the controller received: the policy's action clipped to the env's action bounds "
               "([-1, 1]), pd_ee_delta_pose's rotation (dims 3:6) scaled to norm <= 1 as ManiSkill does")
WHERE = ("num_envs", "worker_timeout", "resume")  # may change on --resume; everything else is the recording's


@dataclass(frozen=True)
class RecordConfig:
    """`bench record` settings; all of them are written into meta/bench.json."""

    output: Path = Path("data/recording")
    """Dataset folder to create (must not exist, unless --resume)."""
    policy: str = "expert"
    """Policy that acts: a preset name, preset file or plugin (e.g. pi05 with --checkpoint)."""
    layout: str | None = None
    """Preset whose [dataset.<keys>] tables, cameras and state layout say what is stored (default: --policy's)."""
    keys: str = "lerobot"
    """Key table of the layout: lerobot (lerobot-train reads it as is) or openpi (a LIBERO-style openpi config)."""
    format: Literal["v3.0", "v2.1"] | None = None
    """LeRobot format (default: the key table's `format`)."""
    tasks: str = "all"
    """A suite (all, extras, smoke) or comma-separated task ids."""
    suite: str | None = None
    """A named suite instead of --tasks."""
    episodes: int | None = None
    """Episodes per task (default: the suite's count, else 50)."""
    seed: int = 0
    """Recording seed: episode i of task T starts from 2^31 + episode_seed(seed, T, i)."""
    only_success: bool = False
    """Write only episodes that succeeded; failures are counted and listed in meta/bench_episodes.jsonl."""
    end_after_success: int | None = None
    """End an episode's frames K frames after its first success (default: the whole step budget)."""
    video: bool = True
    """Store images as MP4 (H.264), LeRobot's default; --no-video stores PNG images in the parquet files."""
    action_horizon: int = 50
    """Action chunk length of openpi's norm stats (openpi's pi05_libero trains with 10)."""
    replan_steps: int = 5
    """Actions executed from each policy chunk before the policy is asked again."""
    sim_backend: Literal["auto", "gpu", "cpu"] = "auto"
    """Physics backend, as for `bench run`."""
    checkpoint: str | None = None
    """Checkpoint of a Pi policy (overrides the preset)."""
    tokenizer: str | None = None
    """PaliGemma tokenizer of a Pi policy (overrides the preset)."""
    norm_stats: str | None = None
    """Norm stats of a Pi policy's checkpoint (overrides the preset)."""
    tasks_dir: Path = DEFAULT_TASKS_DIR
    """Folder holding suite.toml and the task specs."""
    presets_dir: Path = DEFAULT_PRESETS_DIR
    """Folder holding the policy presets."""
    num_envs: int = field(default_factory=default_num_envs)
    """Episodes run in parallel (env slots)."""
    worker_timeout: float = DEFAULT_STEP_TIMEOUT_S
    """Seconds a CPU env worker may stay silent in a step before it counts as dead."""
    resume: bool = False
    """Finish the recording a killed or interrupted `bench record` left in --output, with its recorded settings."""

    def validate(self) -> None:
        for name in ("episodes", "num_envs", "replan_steps", "action_horizon"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise BenchError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.seed < 0 or (self.end_after_success is not None and self.end_after_success < 0):
            raise BenchError("--seed and --end-after-success must be >= 0")
        if self.keys not in KEYS or (self.format is not None and self.format not in FORMATS):
            raise BenchError(f"--keys is one of {', '.join(KEYS)} and --format one of {', '.join(FORMATS)}")

    def run_config(self) -> RunConfig:
        """The engine's settings for these episodes."""
        return RunConfig(policy=self.policy, tasks=self.tasks, suite=self.suite, episodes=self.episodes, seed=self.seed,
                         sim_backend=self.sim_backend, replan_steps=self.replan_steps, tasks_dir=self.tasks_dir,
                         presets_dir=self.presets_dir, checkpoint=self.checkpoint, tokenizer=self.tokenizer,
                         norm_stats=self.norm_stats, num_envs=self.num_envs, worker_timeout=self.worker_timeout)


def record_episodes(task_id: str, seed: int, count: int) -> list[Episode]:
    """The recording's pinned episodes of a task: seeds in [2^31, 2^32), never an evaluation seed."""
    return [Episode(task_id, i, RECORD_SEED_OFFSET + episode_seed(seed, task_id, i)) for i in range(count)]


class FrameBuffer:
    """The engine's frame sink: each running episode's frames, as the layout stores them."""

    def __init__(self, layout: DatasetLayout):
        self.layout = layout
        self.steps = transforms.Pipeline(transforms.observation_steps(layout.cameras, layout.state_layout))
        self.frames: dict[tuple[str, int], list[dict]] = {}

    def start(self, task: TaskSpec, wave: list[Episode], bounds: tuple[np.ndarray, np.ndarray]) -> None:
        self.task, self.wave, self.bounds = task, wave, bounds
        for episode in wave:
            self.frames[(task.id, episode.index)] = []

    def add(self, slots: np.ndarray, obs: dict, actions: np.ndarray) -> None:
        frame = self.steps(transforms.Frame(obs, [instruction_for(self.task, self.wave[s].seed) for s in slots]))
        taken = controller_action(actions, *self.bounds, self.task.control_mode)
        for row, slot in enumerate(slots):
            columns = {key: frame.images[pi_key][row] for pi_key, key in self.layout.images.items()}
            columns[self.layout.state] = frame.state[row]
            columns[self.layout.actions] = taken[row, : self.layout.action_dim]
            self.frames[(self.task.id, self.wave[slot].index)].append(columns)

    def pop(self, task_id: str, index: int, end: int | None) -> dict[str, np.ndarray]:
        frames = self.frames.pop((task_id, index))[:end]
        return {key: np.stack([f[key] for f in frames]) for key in frames[0]}


@dataclass(frozen=True)
class _Plan:
    config: RecordConfig
    suite: TaskSuite
    tasks: list[TaskSpec]
    preset: PolicyPreset
    layout: DatasetLayout
    recorded: dict | None  # bench.json of the recording being resumed


def _resumed(config: RecordConfig) -> tuple[RecordConfig, dict]:
    convert.resume_pending(config.output)
    path = config.output / BENCH_JSON
    if not path.is_file():
        raise BenchError(f"cannot resume {config.output}: no {BENCH_JSON} there; pass a folder `bench record` wrote")
    recorded = open_dataset(config.output).bench
    defaults = RecordConfig(num_envs=1)
    given = [f.name for f in fields(RecordConfig) if f.name not in (*WHERE, "output")
             and getattr(config, f.name) != getattr(defaults, f.name)]
    if given:
        raise BenchError(f"--resume takes every setting from {path}: drop "
                         f"{', '.join('--' + n.replace('_', '-') for n in given)} (--num-envs and --worker-timeout may "
                         "change)")
    values = {k: v for k, v in recorded["settings"].items() if k not in WHERE}
    for name in ("output", "tasks_dir", "presets_dir"):
        values[name] = Path(values[name])
    return RecordConfig(**values, **{name: getattr(config, name) for name in WHERE}), recorded


def prepare(config: RecordConfig) -> _Plan:
    """Every check that starts nothing: settings, packages, tasks, presets, layout, the output folder."""
    config.validate()
    require_lerobot_datasets()
    recorded = None
    if config.resume:
        config, recorded = _resumed(config)
    elif config.output.exists():
        raise BenchError(f"{config.output} already exists: pass another --output, or --resume to finish it")
    suite = load_suite(config.tasks_dir)
    run = config.run_config().resolve(suite)
    config = replace(config, tasks=run.tasks, suite=None, episodes=run.episodes)
    tasks = suite.resolve(config.tasks)
    preset = resolve_preset(config.policy, config.presets_dir).with_overrides(
        checkpoint=config.checkpoint, tokenizer=config.tokenizer, norm_stats=config.norm_stats)
    layout_preset = resolve_preset(config.layout, config.presets_dir) if config.layout else preset
    if not config.layout and not preset.dataset:
        raise BenchError(f"--policy {preset.name} does not say how a dataset stores its inputs: pass --layout pi0 or "
                         "--layout pi05 (a preset with [dataset.<keys>] tables)")
    layout = resolve_layout(layout_preset, config.keys, config.format)
    for task in tasks:
        missing = set(layout.cameras.values()) - set(task.cameras)
        if missing or task.control_mode != "pd_ee_delta_pose":
            raise BenchError(f"{task.id} cannot be recorded with layout {layout.preset}: it needs cameras "
                             f"{sorted(layout.cameras.values())} and pd_ee_delta_pose control (fix the task file)")
    if len({t.control_freq for t in tasks}) != 1:
        raise BenchError("a dataset has one fps: record tasks with the same control_freq, or one dataset per task")
    preflight_policy(preset)
    probe_writable(config.output.parent)
    return _Plan(config, suite, tasks, preset, layout, recorded)


def _bench_json(plan: _Plan, description: dict, packages: dict, renderer: str, status: str, extra: dict) -> dict:
    preset, layout, tasks = plan.preset, plan.layout, plan.tasks
    source = Path(preset.source) if preset.source.endswith(".toml") else None
    layout_source = Path(resolve_preset(layout.preset, plan.config.presets_dir).source)
    return contract.as_json({
        "bench_version": __version__, "created": datetime.now(timezone.utc).isoformat(), "status": status,
        "settings": asdict(plan.config), "format": layout.format, "keys": layout.key_map,
        "layout": {**asdict(layout), "preset_file": str(layout_source), "preset_content": layout_source.read_text()},
        "fps": tasks[0].control_freq, "control_mode": tasks[0].control_mode, "state_layout": layout.state_layout,
        "action": ACTION_NOTE, "video": VIDEO_CODEC if plan.config.video else None,
        "frames": "frame t: the observation the env was in when action t was sent, through the layout preset's "
                  "cameras, resize_with_pad(224) and state steps (bench.policies.pi_transforms.observation_steps)",
        "seeds": "episode i of task T: 2**31 + bench.tasks.episode_seed(seed, T, i)",
        "policy": {"name": preset.name, "plugin": preset.plugin, "preset": preset.source, "params": preset.params,
                   "fingerprint": preset.fingerprint(), "describe": description,
                   "preset_content": source.read_text() if source and source.is_file() else None},
        "suite": {"version": plan.suite.version, "fingerprint": plan.suite.fingerprint(tasks),
                  "tasks": [asdict(t) for t in tasks]},
        "renderer": renderer, "packages": packages, "git_revision": contract.git_revision(), **extra})


def _finish(plan: _Plan, bench: dict) -> dict:
    """Norm stats, bench.json's final form, and the v3.0 conversion when asked."""
    root = plan.config.output
    dataset = open_dataset(root)
    vectors = [dataset.vectors(e["episode_index"]) for e in dataset.episodes]
    frames = sum(len(s) for s, _ in vectors)
    extra = {"openpi_norm_stats": None}
    if frames >= OPENPI_BATCH_SIZE:
        stats = openpi_norm_stats(vectors, plan.config.action_horizon)
        write_text(root / NORM_STATS, json.dumps(stats, indent=2))
        extra["openpi_norm_stats"] = {"file": NORM_STATS, "action_horizon": plan.config.action_horizon,
                                      "batch_size": OPENPI_BATCH_SIZE, "frames_used": frames // OPENPI_BATCH_SIZE *
                                      OPENPI_BATCH_SIZE, "how": "openpi scripts/compute_norm_stats.py's RunningStats "
                                      "over state and action chunks (bench.datasets.stats)"}
    bench = {**bench, **extra, "status": "complete", "episodes_written": len(vectors), "frames": frames}
    write_json(root / BENCH_JSON, bench)
    if plan.layout.format == "v3.0" and vectors:
        convert.to_v30(root)
    return bench


def record(config: RecordConfig, console: Console | None = None) -> dict:
    """Checks everything cheap, then records the pending episodes; returns the final bench.json."""
    console = console or Console()
    plan = prepare(config)
    config, tasks, layout = plan.config, plan.tasks, plan.layout
    writer = V21Writer.reopen(config.output) if plan.recorded else None
    if plan.recorded and open_dataset(config.output).version == "v3.0":
        console.print(f"{config.output} is complete: nothing to resume")
        return plan.recorded
    done = {(r["task_id"], r["episode"]) for r in (writer.rollouts if writer else [])}
    pending = {t.id: [e for e in record_episodes(t.id, config.seed, config.episodes) if (t.id, e.index) not in done]
               for t in tasks}
    buffer = FrameBuffer(layout)
    live = LiveProgress(console, tasks, config.episodes)
    renderer = probe_vulkan().describe()
    events = evaluate(config.run_config(), plan.preset, tasks, pending, min(config.num_envs, config.episodes),
                      config.output, on_step=live.count_steps, sink=buffer)
    bench = plan.recorded
    try:
        for event in events:
            if isinstance(event, Started):
                bench = _bench_json(plan, event.description, event.packages, renderer, "recording", {})
                if writer is None:
                    writer = V21Writer.create(config.output, layout, tasks[0].control_freq, config.video,
                                              tasks[0].robot)
                write_json(config.output / BENCH_JSON, bench)
                verb = f"resuming ({len(done)} episodes already finished)" if done else "recording"
                console.print(f"[bold]bench record[/] {config.output}: {verb}, policy {plan.preset.name}, layout "
                              f"{layout.preset}/{layout.keys} ({layout.format}), {len(tasks)} task(s) x "
                              f"{config.episodes} episodes")
                live.__enter__()
                for rollout in writer.rollouts:
                    live.add({"task": rollout["task_id"], "success_once": rollout["success"]})
            elif isinstance(event, Wave):
                task = next(t for t in tasks if t.id == event.task)
                for r in event.records:
                    _write(writer, buffer, task, r, config, bench)
                    live.add(r)
    finally:
        live.__exit__()
        events.close()
    bench = _finish(plan, bench)
    _summary(console, config, bench, writer)
    return bench


def _write(writer: V21Writer, buffer: FrameBuffer, task: TaskSpec, r: dict, config: RecordConfig,
           bench: dict) -> None:
    """One finished rollout: written as an episode, or listed as skipped (failure under --only-success, error)."""
    rollout = {"task_id": task.id, "episode": r["episode"], "seed": r["seed"], "status": r["status"],
               "error": r["error"], "success": r["success_once"], "success_at_end": r["success_at_end"],
               "first_success_step": r["first_success_step"], "steps": r["steps"],
               "suite_version": bench["suite"]["version"], "renderer": bench["renderer"],
               "policy": bench["policy"]["name"], "policy_fingerprint": bench["policy"]["fingerprint"],
               "policy_describe": bench["policy"]["describe"], "bench_version": bench["bench_version"],
               "git_revision": bench["git_revision"], "packages": bench["packages"]}
    keep = r["status"] == "ok" and (r["success_once"] or not config.only_success)
    end = None
    if config.end_after_success is not None and r["first_success_step"] >= 0:
        end = r["first_success_step"] + config.end_after_success
    columns = buffer.pop(task.id, r["episode"], end)
    if not keep:
        writer.skip(rollout)
        return
    writer.add_episode(columns, instruction_for(task, int(r["seed"])),
                       {**rollout, "frames": len(columns[buffer.layout.state])})


def _summary(console: Console, config: RecordConfig, bench: dict, writer: V21Writer) -> None:
    skipped = sum(1 for r in writer.rollouts if r.get("episode_index") is None)
    console.print(f"dataset: {config.output} ({bench['format']}, keys {config.keys}): {bench['episodes_written']} "
                  f"episodes, {bench['frames']} frames written; {skipped} not written (failures under "
                  f"--only-success or errors, listed in meta/bench_episodes.jsonl)", highlight=False)
    if bench.get("openpi_norm_stats"):
        console.print(f"norm stats: {config.output / NORM_STATS} (openpi, action horizon {config.action_horizon}); "
                      "lerobot's: meta/" + ("stats.json" if bench["format"] == "v3.0" else "episodes_stats.jsonl"),
                      highlight=False)
    root = config.output.resolve()
    console.print("train on it:\n"
                  f"  lerobot-train --dataset.repo_id=local/{root.name} --dataset.root={root} --policy.type="
                  f"{'pi05' if 'pi05' in bench['layout']['preset'] else 'pi0'} ...\n"
                  f"  openpi: a LIBERO-style TrainConfig with repo_id=\"{root.name}\" and HF_LEROBOT_HOME={root.parent} "
                  f"(openpi reads $HF_LEROBOT_HOME/<repo_id>); norm stats: copy {NORM_STATS} into the config's "
                  "assets/<repo_id>/", highlight=False)
