"""The wave engine: pinned episodes -> environments -> policy -> action chunks -> environments -> episode records.

Episodes of a task run in waves of up to N (one per env slot), each for the task's whole step budget: the
evaluation recipe ManiSkill documents (no partial resets, success counted at any step and at the end). A wave's
slots may form two lanes, so that one lane simulates while the policy computes the other's chunks. `evaluate` is
what a local run and each Ray shard execute; it yields `bench.events`, and never writes anything but videos.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.adapters import ActionChunker
from bench.config import RunConfig
from bench.contract import package_versions
from bench.envs import BatchedEnvs, Obs, is_camera_key, open_physics, plan_physics
from bench.events import Done, Event, StepCounter, Started, Wave
from bench.policies import EpisodeContext, Policy, PolicyPreset, build_policy
from bench.tasks import Episode, TaskSpec
from bench.video import WaveVideos


@dataclass
class WaveResult:
    records: list[dict]  # finished episodes, ok or error
    lost: list[Episode]  # episodes whose env worker died: to run again once


class FrameSink(Protocol):
    """Sees every frame of a wave as it is executed (`bench record`): the observation rows of the slots about to
    step and the actions sent to them, in step order. Only finished `ok` records say which episodes to keep."""

    def start(self, task: TaskSpec, wave: list[Episode], bounds: tuple[np.ndarray, np.ndarray]) -> None:
        """A wave starts: slot i runs wave[i]; `bounds` are the controller's action bounds."""

    def add(self, slots: np.ndarray, obs: Obs, actions: np.ndarray) -> None:
        """`obs` rows (the observation each slot is in, copies) and `actions` [len(slots), dim] as sent to the env."""


def _why(policy: Policy, error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"policy '{policy.name}' raised {type(error).__name__}: {text[0][:300] if text else ''}"


def request_chunks(policy: Policy, chunker: ActionChunker, obs: Obs, slots: np.ndarray) -> dict[int, str]:
    """One batched `act` for `slots` (`obs` has their rows, in that order). If the policy raises, each slot's
    episode state is put back as it was before the call (`Policy.snapshot`) and the slots are asked again one at a
    time, so only the slots it fails on end in error and the others act as an uninterrupted run would; a policy
    that cannot snapshot a slot fails the whole batch instead. Returns {slot: why} for the slots dropped.
    Touches only these slots' chunker queues, so it may run beside another lane's simulation."""
    saved = {int(s): policy.snapshot(int(s)) for s in slots} if len(slots) > 1 else {}
    try:
        chunks = policy.act(obs, slots)
    except Exception as e:  # a policy bug or a lost server must not take the other episodes down
        if len(slots) == 1:
            chunker.drop(int(slots[0]))
            return {int(slots[0]): _why(policy, e)}
        failed = {}
        for row, slot in enumerate(int(s) for s in slots):
            if saved[slot] is None:
                chunker.drop(slot)
                failed[slot] = (f"{_why(policy, e)} (in a batch of {len(slots)}; not asked again alone: the policy "
                                "cannot snapshot its per-episode state, see Policy.snapshot)")
                continue
            policy.restore(slot, saved[slot])
            failed.update(request_chunks(policy, chunker, {k: v[row:row + 1] for k, v in obs.items()},
                                         np.array([slot])))
        return failed
    return chunker.push(slots, chunks, policy.name)


@dataclass(frozen=True)
class Observer:
    """Which slots render their cameras at a step. ManiSkill renders every camera on every step by default, which
    costs several times the physics; only three readers need the pictures: the policy, on the steps it is asked for
    a chunk (a camera-reading one), a filmed slot's video (every step) and a recording (every step, every slot)."""

    reads_cameras: bool
    every_step: bool
    filmed: tuple[int, ...] | list[int]

    def at_reset(self, k: int) -> np.ndarray:
        if self.every_step or self.reads_cameras:
            return np.ones(k, bool)  # every slot asks for its first chunk now
        return np.isin(np.arange(k), self.filmed)

    def after_step(self, slots: np.ndarray, chunker: ActionChunker, last: bool) -> np.ndarray:
        """For `slots` about to step (their actions already popped): render the state they step into?"""
        if self.every_step:
            return np.ones(len(slots), bool)
        mask = np.isin(slots, self.filmed)
        if self.reads_cameras and not last:
            mask |= np.isin(slots, chunker.slots_needing_chunk(slots))
        return mask


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
             videos: WaveVideos | None = None, lanes: int = 1, sink: FrameSink | None = None) -> WaveResult:
    """Runs up to N pinned episodes for the task's full step budget, in `lanes` groups of slots that each step in
    lockstep; one policy call at a time, on a helper thread, so that it overlaps the other lane's simulation.

    An episode's actions depend only on its own observations and noise, so how slots are grouped changes no
    result. An episode whose policy call fails ends as an `error` record (with the reason) while the others go
    on; one whose env worker dies is handed back in `lost` to be run again, unless it already was (`retried`),
    then it is an `error` too. A `sink` sees each step's observations and actions as they are sent.

    Cameras render only where someone looks (`Observer`): which steps a policy is asked at does not depend on it.
    """
    started = time.perf_counter()
    k = len(wave)
    observer = Observer(policy.reads_cameras, every_step=sink is not None, filmed=videos.slots if videos else ())
    fresh = observer.at_reset(k)  # slots whose camera rows are this step's
    obs = envs.reset([e.seed for e in wave], observe=fresh)
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
    if sink:
        sink.start(task, wave, bounds)
    groups = [_Lane(slots) for slots in np.array_split(np.arange(k), min(lanes, k))]
    query = None  # (lane, future, start) of the policy call under way
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy") as pool:
        while any(lane.step < task.max_steps for lane in groups):
            for lane in groups:  # start what can start: a policy call (one at a time) or a step
                if lane.step == task.max_steps or lane.simulating or lane.querying:
                    continue
                need = chunker.slots_needing_chunk(lane.slots)
                if len(need) and query is None:
                    if observer.reads_cameras and not fresh[need].all():
                        raise RuntimeError(f"slots {need[~fresh[need]].tolist()} would act on stale camera images")
                    lane.querying = True
                    query = (lane, pool.submit(request_chunks, policy, chunker,
                                               {key: value[need] for key, value in obs.items()}, need),
                             time.perf_counter())
                elif not len(need):
                    actions = chunker.pop(lane.slots)
                    if sink:
                        sink.add(lane.slots, {key: value[lane.slots] for key, value in obs.items()}, actions)
                    envs.step_async(actions, lane.slots,
                                    observer.after_step(lane.slots, chunker, last=lane.step + 1 == task.max_steps))
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
            observed = np.ones(len(slots), bool) if out.observed is None else out.observed
            fresh[slots] = observed
            for key, value in out.obs.items():
                rows = observed if is_camera_key(key) else slice(None)
                if key not in obs:  # a camera first rendered after the reset (a policy that reads none)
                    obs[key] = np.zeros((k, *value.shape[1:]), value.dtype)
                obs[key][slots[rows]] = value[rows]
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


def evaluate(config: RunConfig, preset: PolicyPreset, tasks: list[TaskSpec], pending: dict[str, list[Episode]],
             num_envs: int, run_dir: Path, on_step: StepCounter | None = None,
             sink: FrameSink | None = None) -> Iterator[Event]:
    """Runs the pending episodes of `tasks` on N env slots with one policy, each task on the physics its plan
    gives it. Yields `Started` once the policy is built, has accepted every task and the first task's environments
    are up (the configuration works), a `Wave` of records per wave, and `Done`. Closing the iterator stops the
    environments. `on_step(task_id, k)` is called after every lockstep step of k slots, for live progress; a
    `sink` sees every executed frame (`bench record`).
    """
    plan = plan_physics(tasks, config.sim_backend)
    running = [t for t in tasks if pending[t.id]] or tasks[:1]  # nothing pending (a finished run resumed): check
    processes = None if config.env_processes is None else min(config.env_processes, num_envs)
    with contextlib.ExitStack() as stack:
        envs = {backend: stack.enter_context(open_physics(backend, num_envs, config.worker_timeout, processes))
                for backend in dict.fromkeys(plan.backends[t.id] for t in running)}  # workers start meanwhile
        envs[plan.backends[running[0].id]].begin_task(running[0])  # scenes build while the policy does
        build_started = time.perf_counter()
        policy = build_policy(preset, num_slots=num_envs, seed=config.seed)
        policy_build_s = round(time.perf_counter() - build_started, 2)
        for task in tasks:
            policy.check_task(task)
        for number, task in enumerate(running):
            task_envs = envs[plan.backends[task.id]]
            setup_started = time.perf_counter()
            bounds = task_envs.start_task(task)
            setup = time.perf_counter() - setup_started
            if number == 0:
                yield Started(policy.describe(), plan.backends, plan.why, package_versions(),
                              policy_build_s=policy_build_s, env_processes=getattr(envs.get("cpu"), "processes", None))
            chunker = ActionChunker(num_envs, config.replan_steps, len(bounds[0]))
            queue = list(pending[task.id])
            retried: set[int] = set()
            count = (lambda k, task_id=task.id: on_step(task_id, k)) if on_step else None
            while queue:
                wave, queue = queue[:num_envs], queue[num_envs:]
                with WaveVideos(run_dir, task, wave, keep=config.video) as videos:
                    result = run_wave(task_envs, policy, chunker, task, wave, bounds, retried, count, videos,
                                      lanes_for(task_envs, policy, len(wave)), sink)
                for episode in result.lost:  # its env worker died: once more, in a later wave
                    retried.add(episode.index)
                    queue.append(episode)
                yield Wave(task.id, [{**record, "task_setup_s": setup} for record in result.records])
        yield Done(sum(e.restarts for e in envs.values()))


class LocalExecutor:
    """Runs the episodes in this process (its env workers, its policy)."""

    evaluate = staticmethod(evaluate)

    def layout(self) -> None:
        return None

    def log(self) -> dict:
        return {}
