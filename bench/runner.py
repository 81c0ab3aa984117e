"""The runner: task specs -> environments -> policy -> action chunks -> environments -> episode records.

Episodes of a task run in waves of up to N (one per env slot), each for the task's whole step budget: the
evaluation recipe ManiSkill documents (no partial resets, success counted at any step and at the end).
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
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
from bench.envs import BatchedEnvs, Obs, default_num_envs, open_envs
from bench.errors import BenchError, unknown_name
from bench.policies import (DEFAULT_PRESETS_DIR, EpisodeContext, Policy, PolicyPreset, build_policy,
                             resolve_preset)
from bench.report import print_table, spread_display, spread_table, to_markdown, write_task_leaderboard
from bench.results import MANIFEST, RunWriter, ensure_writable, new_run_id, read_episodes, read_manifest
from bench.tasks import DEFAULT_TASKS_DIR, Episode, TaskSpec, TaskSuite, episodes_for, load_suite
from bench.video import WaveVideos

RECORDED_PACKAGES = ("bench", "mani_skill", "sapien", "gymnasium", "torch", "numpy",
                     "lerobot", "transformers", "jax", "rpent-openpi", "sentencepiece", "ray")  # what Pi results depend on
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
    video: int = 0
    """Episodes per task to record as MP4 (the first ones by index), in <run>/videos/<task>/."""
    output: Path = Path("results")
    """Folder that receives the run folder."""
    run_id: str | None = None
    """Name of the run folder (default: timestamp-policy-pid)."""
    label: str | None = None
    """Name of the policy in leaderboards, reports and comparisons (default: preset@checkpoint#fingerprint)."""
    baseline: Path | None = None
    """A stored baseline run folder: when this run completes, compare it with the baseline (`bench compare`)."""
    fail_on_regression: bool = False
    """With --baseline: exit 1 when this run is significantly worse than the baseline (a CI gate)."""
    margin: float = 0.0
    """With --baseline: smallest drop in success rate that counts as a regression (0.05 = 5 points)."""
    max_error_share: float = 0.1
    """Share of the run's episodes that may end in error (policy exception, NaN actions, dead env worker) before
    the run aborts."""
    resume: Path | None = None
    """A run folder left by an interrupted or killed run: run only its missing episodes, with its recorded settings."""
    repeat: int = 1
    """Run the evaluation this many times with run seeds seed, seed+1, ... (run ids <run-id>-r0, -r1, ...) and
    report the spread of success rates: the noise floor of a result with this many episodes."""
    ray: bool = False
    """Run the episodes as shards on a Ray cluster (a local one unless --ray-address); results stream back here."""
    ray_address: str | None = None
    """Ray cluster to join ("auto": the one `ray start` set up on this machine); implies --ray."""
    shard_episodes: int | None = None
    """With --ray: episodes per shard (default: a task's pending episodes form one shard)."""
    shard_gpus: float = 0.0
    """With --ray: GPUs each shard reserves (e.g. 1 for a Pi policy on CUDA, 0.5 to share one between two)."""
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
        for name in ("episodes", "num_envs", "replan_steps", "repeat", "shard_episodes"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise BenchError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        for name in ("seed", "video"):
            if getattr(self, name) < 0:
                raise BenchError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.max_error_share <= 1:
            raise BenchError(f"--max-error-share must be between 0 and 1, got {self.max_error_share}")


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
              description: dict, backend: str, backend_reason: str, num_envs: int, cluster: dict | None) -> dict:
    """What produced the run, so that any number can be traced back and two runs checked for comparability."""
    packages = _package_versions()
    return {
        "run_id": run_id, "created": datetime.now(timezone.utc).isoformat(),
        "bench_version": __version__, "config": {**asdict(config), "num_envs_used": num_envs},
        "suite": {"version": suite.version, "fingerprint": suite.fingerprint(tasks),
                  "tasks": [asdict(t) for t in tasks]},
        "policy": {"name": preset.name, "label": config.label, "plugin": preset.plugin, "preset": preset.source,
                   "params": preset.params, "fingerprint": preset.fingerprint(), "describe": description},
        "environments": {"backend": backend, "why": backend_reason, "num_envs": num_envs},
        "cluster": cluster,
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


@dataclass
class WaveResult:
    records: list[dict]  # finished episodes, ok or error
    lost: list[Episode]  # episodes whose env worker died: to run again once


def _why(policy: Policy, error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"policy '{policy.name}' raised {type(error).__name__}: {text[0][:300] if text else ''}"


def request_chunks(policy: Policy, chunker: ActionChunker, obs: Obs, slots: np.ndarray) -> dict[int, str]:
    """One batched `act` for `slots` (`obs` has their rows, in that order); if the policy raises, it is asked
    again one slot at a time, so only the slots it fails on end in error. Returns {slot: why} for the slots
    dropped. Touches only these slots' chunker queues, so it may run beside another lane's simulation."""
    try:
        chunks = policy.act(obs, slots)
    except Exception as e:  # a policy bug or a lost server must not take the other episodes down
        if len(slots) == 1:
            chunker.drop(int(slots[0]))
            return {int(slots[0]): _why(policy, e)}
        failed = {}
        for row, slot in enumerate(slots):
            failed.update(request_chunks(policy, chunker, {k: v[row:row + 1] for k, v in obs.items()},
                                         np.array([slot])))
        return failed
    return chunker.push(slots, chunks, policy.name)


@dataclass
class _Lane:
    """Slots of a wave that step in lockstep. With two lanes, one lane's environments step while the policy
    computes the other's chunks, so neither the simulator nor the model waits for the other."""

    slots: np.ndarray
    step: int = 0
    simulating: bool = False  # a step is under way in its environments
    querying: bool = False  # a policy call for it is under way


def lanes_for(envs: BatchedEnvs, policy: Policy, k: int) -> int:
    """Two lanes where slots can step on their own and the policy is worth overlapping with; else one."""
    return 2 if envs.independent_slots and policy.overlap and k >= 2 else 1


def run_wave(envs: BatchedEnvs, policy: Policy, chunker: ActionChunker, task: TaskSpec, wave: list[Episode],
             bounds: tuple[np.ndarray, np.ndarray], retried: set[int], on_step=None,
             videos: WaveVideos | None = None, lanes: int = 1) -> WaveResult:
    """Runs up to N pinned episodes for the task's full step budget, in `lanes` groups of slots that each step in
    lockstep; one policy call at a time, on a helper thread, so that it overlaps the other lane's simulation.

    An episode's actions depend only on its own observations and noise, so how slots are grouped changes no
    result. An episode whose policy call fails ends as an `error` record (with the reason) while the others go
    on; one whose env worker dies is handed back in `lost` to be run again, unless it already was (`retried`),
    then it is an `error` too.
    """
    started = time.perf_counter()
    k = len(wave)
    obs = envs.reset([e.seed for e in wave])
    for slot, episode in enumerate(wave):
        policy.reset(slot, EpisodeContext(task, episode, *bounds))
        chunker.reset(slot)
    success_once = np.zeros(k, bool)
    success_now = np.zeros(k, bool)
    first_success = np.full(k, -1)
    returns = np.zeros(k)
    errors: dict[int, str] = {}
    died: dict[int, str] = {}
    policy_time = sim_time = 0.0
    if videos:
        videos.capture(envs.render, obs, 0, success_once, first_success)
    groups = [_Lane(slots) for slots in np.array_split(np.arange(k), min(lanes, k))]
    query = None  # (lane, future, start) of the policy call under way
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy") as pool:
        while any(lane.step < task.max_steps for lane in groups):
            for lane in groups:  # start what can start: a policy call (one at a time) or a step
                if lane.step == task.max_steps or lane.simulating or lane.querying:
                    continue
                need = chunker.slots_needing_chunk(lane.slots)
                if len(need) and query is None:
                    lane.querying = True
                    query = (lane, pool.submit(request_chunks, policy, chunker,
                                               {key: value[need] for key, value in obs.items()}, need),
                             time.perf_counter())
                elif not len(need):
                    envs.step_async(chunker.pop(lane.slots), lane.slots)
                    lane.simulating = True
            if query is not None and (query[1].done() or not any(lane.simulating for lane in groups)):
                lane, future, t0 = query
                errors.update(future.result())  # waits if nothing else can go on
                policy_time += time.perf_counter() - t0
                lane.querying, query = False, None
                continue
            lane = next(lane for lane in groups if lane.simulating)  # wait for a step under way
            t0 = time.perf_counter()
            out = envs.step_wait(lane.slots)
            sim_time += time.perf_counter() - t0
            lane.simulating = False
            lane.step += 1
            slots = lane.slots
            for slot, why in out.failed.items():
                if slot not in died:
                    died[slot] = why
                    chunker.drop(slot)
            returns[slots] += out.reward
            first_success[slots[out.success & ~success_once[slots]]] = lane.step
            success_once[slots] |= out.success
            success_now[slots] = out.success
            for key, value in out.obs.items():
                obs[key][slots] = value
            if videos:
                videos.capture(envs.render, obs, lane.step, success_now, first_success, among=slots)
            if on_step:
                on_step(len(slots))
    wall = time.perf_counter() - started
    lost = [e for slot, e in enumerate(wave) if slot in died and e.index not in retried]
    for slot, why in died.items():
        errors.setdefault(slot, f"{why}; the episode was already a retry" if wave[slot].index in retried else why)
    video_paths = videos.finish(success_once, drop={wave.index(e) for e in lost}) if videos else {}
    records = [
        {"task": task.id, "episode": e.index, "seed": e.seed, "status": "error" if i in errors else "ok",
         "error": errors.get(i), "success_once": bool(success_once[i]) and i not in errors,
         "success_at_end": bool(success_now[i]) and i not in errors, "first_success_step": int(first_success[i]),
         "steps": task.max_steps, "return": float(returns[i]), "wall_time_s": wall, "sim_time_s": sim_time,
         "policy_time_s": policy_time, "wave_size": k, "lanes": len(groups), "retry": e.index in retried,
         "video": video_paths.get(i)}
        for i, e in enumerate(wave) if e not in lost
    ]
    return WaveResult(records, lost)


class RunAborted(BenchError):
    """The run stopped itself (too many episode errors); what finished is saved."""

    exit_code = 1


def resumed_config(config: RunConfig) -> tuple[RunConfig, dict]:
    """`--resume RUN`: the settings the run's manifest recorded (only --num-envs may change), and that manifest."""
    run_dir = config.resume
    if not (run_dir / MANIFEST).is_file():
        raise BenchError(f"cannot resume {run_dir}: no {MANIFEST} there; pass a run folder written by `bench run`")
    execution = {"num_envs": config.num_envs, "ray": config.ray, "ray_address": config.ray_address,
                 "shard_episodes": config.shard_episodes, "shard_gpus": config.shard_gpus}  # where, not what
    if replace(config, resume=None, **{k: getattr(RunConfig(num_envs=1), k) for k in execution}) != RunConfig(num_envs=1):
        raise BenchError("--resume takes every setting from the run's manifest: drop the other options "
                         "(--num-envs and the Ray options may change)")
    manifest = read_manifest(run_dir)
    recorded = manifest["config"]
    known = {f.name for f in fields(RunConfig)} - {"resume", "baseline", "fail_on_regression", "repeat", *execution}
    values = {k: v for k, v in recorded.items() if k in known}
    values.update(output=run_dir.parent, run_id=run_dir.name, tasks_dir=Path(recorded["tasks_dir"]),
                  presets_dir=Path(recorded["presets_dir"]), resume=run_dir, **execution)
    return RunConfig(**values), manifest


def _json(data: dict) -> dict:
    return json.loads(json.dumps(data, default=str))


def evaluate(config: RunConfig, preset: PolicyPreset, tasks: list[TaskSpec], pending: dict[str, list[Episode]],
             num_envs: int, run_dir: Path, on_step=None) -> Iterator[dict]:
    """Runs the pending episodes of `tasks` on N env slots with one policy; yields events as plain dicts (they also
    travel from Ray shards): `started` once the first task's environments are up (the configuration works),
    `wave` with each wave's episode records, and `done` with the count of env workers restarted.

    `on_step(task_id, k)` is called after every lockstep step of k slots, for live progress.
    """
    envs, backend_reason = open_envs(config.sim_backend, num_envs)  # CPU workers start up while the policy builds
    try:
        policy = build_policy(preset, num_slots=num_envs, seed=config.seed)
        for task in tasks:
            policy.check_task(task)
    except BaseException:
        envs.close()
        raise
    started = False
    with envs:
        for task in tasks:
            if not pending[task.id] and started:
                continue
            bounds = envs.start_task(task)
            if not started:
                yield {"kind": "started", "description": policy.describe(), "backend": envs.backend,
                       "why": backend_reason}
                started = True
            chunker = ActionChunker(num_envs, config.replan_steps, len(bounds[0]))
            queue = list(pending[task.id])
            retried: set[int] = set()
            count = (lambda k, task_id=task.id: on_step(task_id, k)) if on_step else None
            while queue:
                wave, queue = queue[:num_envs], queue[num_envs:]
                with WaveVideos(run_dir, task, wave, keep=config.video) as videos:
                    result = run_wave(envs, policy, chunker, task, wave, bounds, retried, count, videos,
                                      lanes_for(envs, policy, len(wave)))
                for episode in result.lost:  # its env worker died: once more, in a later wave
                    retried.add(episode.index)
                    queue.append(episode)
                yield {"kind": "wave", "task": task.id, "records": result.records}
        yield {"kind": "done", "restarts": envs.restarts}


def run(config: RunConfig, console: Console | None = None) -> RunOutcome:
    """Validates everything it can before the first episode, then evaluates and writes the run folder.

    With `resume`, only the episodes the run folder lacks are run, after checking that the evaluation
    contract (settings, task specs, policy and checkpoint fingerprints, versions) is still the recorded one.
    With `ray`, the episodes run as shards on a Ray cluster (bench.cluster) and stream back to this process,
    which alone writes the run folder.
    """
    console = console or Console()
    previous = None
    if config.resume is not None:
        config, previous = resumed_config(config)
    config.validate()
    suite = load_suite(config.tasks_dir)
    config = config.resolve(suite)
    tasks = suite.resolve(config.tasks)
    preset = resolve_preset(config.policy, config.presets_dir).with_overrides(
        server=config.server, backend=config.backend, checkpoint=config.checkpoint, tokenizer=config.tokenizer,
        norm_stats=config.norm_stats)
    ensure_writable(config.output)
    num_envs = min(config.num_envs, config.episodes)
    run_id = config.run_id or new_run_id(preset.name)
    run_dir = config.output / run_id
    if previous is None and run_dir.exists():
        raise BenchError(f"{run_dir} already exists: choose another --run-id, or --resume {run_dir}")
    finished = set()
    if previous is not None:
        finished = {(r.task, int(r.episode)) for r in read_episodes(run_dir).itertuples()}
    pending = {t.id: [e for e in episodes_for(t.id, config.seed, config.episodes) if (t.id, e.index) not in finished]
               for t in tasks}
    total = len(tasks) * config.episodes
    allowed_errors = int(config.max_error_share * total)
    todo = sum(map(len, pending.values()))
    verb = f"resuming ({total - todo} of {total} episodes already finished)" if previous else "running"
    console.print(f"[bold]bench[/] {run_id}: {verb}, policy {preset.name}, {len(tasks)} task(s) x {config.episodes} "
                  f"episodes")
    live = _Live(console, tasks, config.episodes)
    cluster = None
    if config.ray or config.ray_address:
        from bench.cluster import Cluster

        cluster = Cluster.connect(config)
        events = cluster.evaluate(config, preset, tasks, pending, num_envs, run_dir)
    else:
        events = evaluate(config, preset, tasks, pending, num_envs, run_dir, on_step=live.count_steps)
    writer = None
    status = "failed"
    episodes_table = table = None
    restarts = 0
    try:
        with live.progress:
            for event in events:
                if event["kind"] == "started" and writer is None:  # the configuration works: open the run folder
                    console.print(f"environments: {event['why']}")
                    manifest = _manifest(config, run_id, suite, tasks, preset, event["description"], event["backend"],
                                         event["why"], num_envs, cluster.layout() if cluster else None)
                    if previous is not None:
                        _check_same_contract(previous, manifest, run_dir)
                        manifest = {**previous, "config": {**previous["config"], "num_envs_used": num_envs}}
                    writer = RunWriter(run_dir, manifest, resume=previous is not None)
                    errors = [r for r in writer.records if r.get("status") == "error"]  # a resumed run's count too
                    written = {(r["task"], int(r["episode"])) for r in writer.records}
                    for record in writer.records:
                        live.add(record)
                elif event["kind"] == "wave":
                    for record in event["records"]:
                        if (record["task"], record["episode"]) in written:  # a retried Ray shard replays its episodes
                            continue
                        written.add((record["task"], record["episode"]))
                        writer.append({"run_id": run_id, "policy": preset.name, **record})
                        live.add(record)
                        if cluster:  # a shard reports its steps with its waves
                            live.count_steps(record["task"], record["steps"])
                        if record["status"] == "error":
                            errors.append(record)
                    if len(errors) > allowed_errors:
                        raise RunAborted(
                            f"{len(errors)} of {total} episodes ended in error, more than --max-error-share "
                            f"{config.max_error_share:g} allows; first: {errors[0]['task']} episode "
                            f"{errors[0]['episode']}: {errors[0]['error']}")
                elif event["kind"] == "done":
                    restarts += event["restarts"]
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except RunAborted:
        status = "aborted"
        raise
    finally:
        events.close()  # stops the environments (local) or cancels the shards (Ray)
        if writer is not None:
            extra = {"env_restarts": restarts, **({"shards": cluster.shard_log} if cluster else {})}
            episodes_table = writer.finish(status, **extra)
            if not episodes_table.empty:
                title = f"{preset.name} - {run_id} ({status})"
                table = write_task_leaderboard(run_dir, episodes_table, title, console)
            console.print(f"results: {run_dir}")
    return RunOutcome(run_dir, status, episodes_table, table)


def _check_same_contract(previous: dict, manifest: dict, run_dir: Path) -> None:
    """A resumed run must evaluate exactly as it started; otherwise its halves would not form one result."""
    old, new = _flat(previous.get("contract", {})), _flat(_json(manifest["contract"]))
    differences = [f"{key}: {json.dumps(old.get(key))} != {json.dumps(new.get(key))}"
                   for key in {**old, **new} if old.get(key) != new.get(key)]
    if differences:
        raise BenchError(f"cannot resume {run_dir}: it was started with other settings, task specs, policy or "
                         "package versions:\n  " + "\n  ".join(differences))


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
