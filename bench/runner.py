"""The driver of `bench run`: checks what it can before anything starts, runs the episodes through an executor
(this process, or shards on a Ray cluster) and alone writes the run folder.

Order: settings and files are checked before any worker starts; the run is shown (the "running" line, progress
bars) and its folder created only once the policy is built, has accepted every task, the environments are up and
a --baseline's or --resume's whole evaluation contract matches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from rich.console import Console

from bench import contract
from bench.cluster import RayExecutor
from bench.config import RunConfig
from bench.engine import LocalExecutor
from bench.envs import summary
from bench.errors import BenchError
from bench.events import Done, Executor, Started, Wave
from bench.policies import PolicyPreset, preflight_policy, resolve_preset
from bench.progress import LiveProgress
from bench.report import print_table, spread_display, spread_table, to_markdown, write_task_leaderboard
from bench.results import MANIFEST, RunWriter, new_run_id, probe_writable, read_episodes, read_manifest
from bench.tasks import Episode, TaskSpec, TaskSuite, episodes_for, load_suite


@dataclass
class RunOutcome:
    run_dir: Path
    status: str
    episodes: pd.DataFrame
    table: pd.DataFrame | None


class RunAborted(BenchError):
    """The run stopped itself (too many episode errors); what finished is saved."""

    exit_code = 1


class RunFailed(BenchError):
    """The run could not go on (e.g. the disk is full); every episode finished before is saved."""

    exit_code = 1


@dataclass(frozen=True)
class _Plan:
    """What `run` settled before starting anything."""

    config: RunConfig
    suite: TaskSuite
    tasks: list[TaskSpec]
    preset: PolicyPreset
    run_dir: Path
    num_envs: int
    previous: dict | None  # the manifest of the run being resumed
    reference: tuple[str, dict | None] | None  # (refusal, contract) the run must match: a --baseline's
    episodes: dict[str, list[Episode]]  # each task's episodes (bench's evaluation seeds, or --episodes-from's)
    episodes_from: dict | None  # --episodes-from: {dataset, digest, episodes per task} for the manifest

    @property
    def counts(self) -> dict[str, int]:
        return {task: len(episodes) for task, episodes in self.episodes.items()}


def _prepare(config: RunConfig) -> _Plan:
    """Every check that needs no worker and no model: settings, task files, preset, policy files, output folder,
    the static part of a baseline's or resumed run's contract."""
    previous = None
    if config.resume is not None:
        if not (config.resume / MANIFEST).is_file():
            raise BenchError(f"cannot resume {config.resume}: no {MANIFEST} there; pass a run folder written by "
                             "`bench run`")
        previous = read_manifest(config.resume)
        config = config.resumed(previous["config"])
    config.validate()
    suite = load_suite(config.tasks_dir)
    recorded = None
    if config.episodes_from is not None:
        recorded = _recorded_episodes(config, previous, run_dir=config.resume)
        config = replace(config, episodes_from=config.episodes_from.resolve())
        if config.tasks == "all" and config.suite is None:  # the default: the dataset's tasks
            config = replace(config, tasks=",".join(recorded))
    config = config.resolve(suite)
    tasks = suite.resolve(config.tasks)
    if recorded is not None:
        absent = [t.id for t in tasks if t.id not in recorded]
        if absent:
            raise BenchError(f"--episodes-from {config.episodes_from} holds no episodes of {', '.join(absent)} (it "
                             f"holds {', '.join(recorded)}): pass --tasks among those")
        episodes = {t.id: recorded[t.id][:config.episodes] for t in tasks}
    else:
        episodes = {t.id: episodes_for(t.id, config.seed, config.episodes) for t in tasks}
    episodes_from = None if recorded is None else {
        "dataset": str(config.episodes_from), "digest": contract.episodes_digest(recorded),
        "episodes": {task: len(e) for task, e in episodes.items()}}
    digest = episodes_from["digest"] if episodes_from else None
    preset = resolve_preset(config.policy, config.presets_dir).with_overrides(
        server=config.server, backend=config.backend, checkpoint=config.checkpoint, tokenizer=config.tokenizer,
        train_config=config.train_config, norm_stats=config.norm_stats)
    preflight_policy(preset)
    probe_writable(config.output)
    run_dir = config.output / (config.run_id or new_run_id(preset.name))
    if previous is None and run_dir.exists():
        raise BenchError(f"{run_dir} already exists: choose another --run-id, or --resume {run_dir}")
    static = contract.build(config, suite.version, tasks, None, None, None, contract.package_versions(), digest)
    reference = None
    if config.baseline is not None:
        if not (config.baseline / MANIFEST).is_file():
            raise BenchError(f"--baseline {config.baseline} is not a run folder (no {MANIFEST}): pass a folder "
                             "written by `bench run`")
        reference = (f"this run would not evaluate what the baseline {config.baseline} did; run it with the "
                     "baseline's settings (task files, --seed, --replan-steps, versions)",
                     read_manifest(config.baseline).get("contract"))
    if previous is not None:
        _must_match(_resumed(run_dir, previous), static, [t.id for t in tasks])
    elif reference is not None:
        _must_match(reference, static, [t.id for t in tasks])
    num_envs = min(config.num_envs, max(len(e) for e in episodes.values()))
    return _Plan(config, suite, tasks, preset, run_dir, num_envs, previous, reference, episodes, episodes_from)


def _recorded_episodes(config: RunConfig, previous: dict | None, run_dir: Path | None) -> dict[str, list[Episode]]:
    """--episodes-from's dataset episodes; a resumed run's dataset must still be where it was."""
    from bench.datasets.read import recorded_episodes  # pyarrow and lerobot only when asked

    if previous is not None and not config.episodes_from.is_dir():
        raise BenchError(f"cannot resume {run_dir}: its episodes come from the dataset {config.episodes_from} "
                         "(--episodes-from), which is no longer there; put it back at that path")
    return recorded_episodes(config.episodes_from)


def _resumed(run_dir: Path, previous: dict) -> tuple[str, dict | None]:
    return (f"cannot resume {run_dir}: it was started with other settings, task specs, policy or package versions",
            previous.get("contract"))


def _must_match(reference: tuple[str, dict | None], run_contract: dict, tasks: list[str], policy: bool = False) -> None:
    """Refuses the run unless its contract matches the reference's (a baseline: evaluation and the common tasks;
    a resumed run: everything)."""
    refusal, recorded = reference
    if recorded is None:
        raise BenchError(f"{refusal}: it predates evaluation contracts, so nothing shows how it was evaluated")
    common = [t for t in tasks if t in recorded.get("tasks", {})] if not policy else None
    found = contract.differences(recorded, run_contract, common, policy=policy)
    if found:
        raise BenchError(f"{refusal}:\n  " + "\n  ".join(found))


def run(config: RunConfig, console: Console | None = None, executor: Executor | None = None) -> RunOutcome:
    """Validates everything it can before the first episode, then evaluates and writes the run folder.

    With `resume`, only the episodes the run folder lacks are run, after checking that the evaluation contract
    (settings, task specs, physics, policy and checkpoint fingerprints, versions) is still the recorded one.
    """
    console = console or Console()
    plan = _prepare(config)
    config, tasks, preset, run_dir, previous = plan.config, plan.tasks, plan.preset, plan.run_dir, plan.previous
    finished = set()
    if previous is not None:
        finished = {(r.task, int(r.episode)) for r in read_episodes(run_dir).itertuples()}
    pending = {t.id: [e for e in plan.episodes[t.id] if (t.id, e.index) not in finished] for t in tasks}
    total = sum(plan.counts.values())
    allowed_errors = int(config.max_error_share * total)
    executor = executor or (RayExecutor.connect(config) if config.ray or config.ray_address else LocalExecutor())
    live = LiveProgress(console, tasks, plan.counts)
    digest = plan.episodes_from["digest"] if plan.episodes_from else None
    evaluation_started = time.perf_counter()
    events = executor.evaluate(config, preset, tasks, pending, plan.num_envs, run_dir, on_step=live.count_steps)
    startup = None  # s until the policy was built and the first task's environments were up
    policy_build_s = None  # of those, s building the policy (the environments start meanwhile)
    env_processes = None  # CPU worker processes that hosted the env slots
    writer = run_contract = packages = None
    status = "failed"
    episodes_table = table = None
    restarts = 0
    errors: list[dict] = []
    written: set[tuple[str, int]] = set()
    try:
        for event in events:
            if isinstance(event, Started) and writer is None:  # the configuration works: show and open the run
                startup = round(time.perf_counter() - evaluation_started, 2)
                policy_build_s, env_processes = event.policy_build_s, event.env_processes
                packages = event.packages
                manifest = contract.manifest(config, run_dir.name, plan.suite, tasks, preset, event.description,
                                             event.backends, event.why, plan.num_envs, packages, executor.layout(),
                                             plan.episodes_from)
                run_contract = manifest["contract"]
                if previous is not None:
                    _must_match(_resumed(run_dir, previous), run_contract, [t.id for t in tasks], policy=True)
                    manifest = {**previous, "config": {**previous["config"], "num_envs_used": plan.num_envs}}
                elif plan.reference is not None:
                    _must_match(plan.reference, run_contract, [t.id for t in tasks])
                writer = RunWriter(run_dir, manifest, resume=previous is not None)
                errors = [r for r in writer.records if r.get("status") == "error"]  # a resumed run's count too
                written = {(r["task"], int(r["episode"])) for r in writer.records}
                todo = sum(map(len, pending.values()))
                verb = f"resuming ({total - todo} of {total} episodes already finished)" if previous else "running"
                console.print(f"[bold]bench[/] {run_dir.name}: {verb}, policy {preset.name}, {len(tasks)} task(s) x "
                              f"{_count(plan.counts)} episodes" + (f" recorded in {config.episodes_from}"
                                                                   if config.episodes_from else ""), highlight=False)
                console.print(f"physics: {summary(event.backends, event.why)}", highlight=False)
                live.__enter__()
                for record in writer.records:
                    live.add(record)
            elif isinstance(event, Started):  # another Ray shard: it must evaluate what the first one does
                shard = contract.build(config, plan.suite.version, tasks, preset, event.description, event.backends,
                                       event.packages, digest)
                contract.check_shard(run_contract, packages, shard, event.packages, event.node or {})
            elif isinstance(event, Wave):
                for record in event.records:
                    if (record["task"], record["episode"]) in written:  # a retried Ray shard replays its episodes
                        continue
                    written.add((record["task"], record["episode"]))
                    _append(writer, {"run_id": run_dir.name, "policy": preset.name, **record})
                    live.add(record)
                    if record["status"] == "error":
                        errors.append(record)
                if len(errors) > allowed_errors:
                    raise RunAborted(
                        f"{len(errors)} of {total} episodes ended in error, more than --max-error-share "
                        f"{config.max_error_share:g} allows; first: {errors[0]['task']} episode "
                        f"{errors[0]['episode']}: {errors[0]['error']}")
            elif isinstance(event, Done):
                restarts += event.restarts
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except RunAborted:
        status = "aborted"
        raise
    finally:
        live.__exit__()
        events.close()  # stops the environments (local) or cancels the shards (Ray)
        if writer is not None:
            timing = {"env_restarts": restarts, "startup_s": startup, "policy_build_s": policy_build_s,
                      "env_processes": env_processes}
            episodes_table, table = _finish(writer, status, {**timing, **executor.log()}, preset, run_dir, console)
    return RunOutcome(run_dir, status, episodes_table, table)


def _count(counts: dict[str, int]) -> str:
    """Episodes per task: `50`, or `3-5` when --episodes-from's tasks hold different numbers."""
    low, high = min(counts.values()), max(counts.values())
    return str(low) if low == high else f"{low}-{high}"


def _append(writer: RunWriter, record: dict) -> None:
    try:
        writer.append(record)
    except OSError as e:
        raise RunFailed(f"cannot write {writer.run_dir}: {e.strerror}; every episode finished before "
                        f"({len(writer.records)}) is saved: free space, then `bench run --resume {writer.run_dir}`"
                        ) from None


def _finish(writer: RunWriter, status: str, extra: dict, preset: PolicyPreset, run_dir: Path,
            console: Console) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Closes the run folder; on a full or failing disk, says so and keeps episodes.jsonl as the record."""
    try:
        episodes = writer.finish(status, **extra)
    except OSError as e:
        console.print(f"[red]could not finish {run_dir}[/]: {e.strerror}; episodes.jsonl holds every finished episode",
                      highlight=False)
        return pd.DataFrame.from_records(writer.records), None
    table = None
    if not episodes.empty:
        table = write_task_leaderboard(run_dir, episodes, f"{preset.name} - {run_dir.name} ({status})", console)
    console.print(f"results: {run_dir}")
    return episodes, table


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
