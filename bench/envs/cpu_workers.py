"""CPU physics: ManiSkill envs (num_envs=1 each) in worker processes, several per process, driven over pipes
(`CpuWorkerEnvs`)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence

import numpy as np

from bench.envs.base import ActionBounds, BatchedEnvs, Obs, StepOutput, observe_mask, stack_obs
from bench.envs.maniskill import cameras, flatten_obs, make_maniskill_env, vulkan_error
from bench.errors import BenchError
from bench.tasks import TaskSpec

# How long the driver waits for a worker's reply before treating the worker as dead (see CpuWorkerEnvs). Read when
# a CpuWorkerEnvs is made: its arguments (passed on by `open_physics`) override them, tests shorten them.
DEFAULT_START_TIMEOUT_S = 300.0  # start and reset: building (or rebuilding) a scene
DEFAULT_STEP_TIMEOUT_S = 120.0  # step and render
CLOSE_TIMEOUT_S = 10.0  # close: all the workers together, then the stragglers are killed


def default_processes(num_envs: int) -> int:
    """One worker process per core, at most one per env: a process's first scene costs seconds (imports, shader
    compilation, and process start-ups that serialize on a GPU driver), each further one a fraction of a second."""
    return max(1, min(num_envs, len(os.sched_getaffinity(0))))


def _worker_main(conn, torch_threads: int | None) -> None:
    """Worker loop. Persistent across tasks so the ~20 s of imports are paid once per run, not per task.

    Every command names the worker's envs it is for ({env index: argument}) and its reply says which it answers,
    so that the driver can pair replies with requests when two lanes' steps are under way in one worker.
    Ctrl-C reaches the whole process group; workers ignore it and let the driver shut them down in order.
    ManiSkill computes observations with small torch ops; with torch's default of one thread per core in every
    worker, N workers oversubscribe the cores N times over, so workers use `torch_threads` (default 1).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    envs: dict[int, object] = {}
    while True:
        command, asked = conn.recv()
        try:
            reply = {}
            for index, arg in asked.items():
                if command == "start":
                    if index in envs:
                        envs.pop(index).close()
                    env = envs[index] = make_maniskill_env(arg, num_envs=1, sim_backend="physx_cpu")
                    reply[index] = (env.action_space.low.reshape(-1), env.action_space.high.reshape(-1))
                elif command == "reset":
                    seed, observe = arg
                    with cameras(envs[index], on=observe):
                        obs, _ = envs[index].reset(seed=seed)
                    reply[index] = flatten_obs(obs)
                elif command == "step":
                    action, observe = arg
                    with cameras(envs[index], on=observe):
                        obs, reward, _, _, info = envs[index].step(action)
                    reply[index] = (flatten_obs(obs), float(reward), bool(info["success"]))
                elif command == "render":
                    reply[index] = envs[index].render()[0].cpu().numpy()
                elif command != "close":
                    raise ValueError(f"unknown command {command}")
            if command == "close":
                for env in envs.values():
                    env.close()
                conn.send((command, list(asked), "ok", None))
                return
            conn.send((command, list(asked), "ok", reply))
        except BenchError as e:
            conn.send((command, list(asked), "bench_error", str(e)))
        except Exception as e:  # sent back so the driver can report it with the worker's traceback
            conn.send((command, list(asked), "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class CpuWorkerEnvs(BatchedEnvs):
    """N env slots in P worker processes (default: one per core, `default_processes`); slot s is env s // P of
    worker s % P, so that any run of consecutive slots (a lane, a short wave) spreads over as many processes as it
    can. A process's first env costs seconds to build and each further one a fraction of a second; every env of a
    process steps in turn, while the processes step in parallel.

    gymnasium's AsyncVectorEnv does not fit: it is rebuilt per task (paying worker imports again), always
    steps every env (a short last wave would waste work) and has no per-slot restart. The protocol here is
    five commands over a pipe; only the slots being recorded are asked to render. A worker that dies mid-episode
    (crash, OOM kill) ends only its own slots' episodes: `step` reports them in `failed` and leaves them out until
    the next `reset` starts a new worker.

    A worker that hangs without dying (a deadlock in a native library, a stopped process) is treated exactly like
    one that died: every wait for replies has one deadline for all the slots asked, and a worker that has not
    answered by then is killed (SIGKILL, which also ends a stopped process) and reported with its slots, pid,
    command and timeout. The timeouts only have to catch a hung worker, never a slow one, so they are generous:
    - `start_timeout_s` (start and reset; default DEFAULT_START_TIMEOUT_S, 300 s, and never below the step
      timeout): building a scene took ~10 s with 2 workers on 2 cores, several times that on cores shared with
      other jobs, and grows with the workers per core (16 workers on 2 cores: a minute or more, an estimate);
      resets take ~0.3 s, but rebuild the scene in tasks that reconfigure at reset.
    - `step_timeout_s` (step and render; default DEFAULT_STEP_TIMEOUT_S, 120 s): a step with two 224x224 cameras
      takes ~0.2 s on lavapipe, a render ~0.2 s; 120 s is hundreds of times that, room for a loaded machine.
    `close` waits CLOSE_TIMEOUT_S (10 s) in all for the workers to exit, then kills the rest. Not caught: a worker
    that stops halfway through writing a reply larger than the pipe's buffer (`recv` has no timeout).
    """

    backend = "cpu"
    independent_slots = True

    def __init__(self, num_envs: int, torch_threads: int | None = 1, step_timeout_s: float | None = None,
                 start_timeout_s: float | None = None, processes: int | None = None):
        step = DEFAULT_STEP_TIMEOUT_S if step_timeout_s is None else step_timeout_s
        start = max(DEFAULT_START_TIMEOUT_S, step) if start_timeout_s is None else start_timeout_s
        if not (step > 0 and start > 0):
            raise ValueError(f"worker timeouts must be positive, got step {step} s and start {start} s")
        processes = default_processes(num_envs) if processes is None else processes
        if not 0 < processes <= num_envs:
            raise ValueError(f"env worker processes must be 1..{num_envs} (the env slots), got {processes}")
        self._timeouts = {"start": start, "reset": start, "step": step, "render": step}
        self.num_envs = num_envs
        self.processes = processes
        self._torch_threads = torch_threads
        self._active = 0
        self._spec: TaskSpec | None = None
        self._begun: TaskSpec | None = None  # the task whose "start" went out with begin_task, not yet gathered
        self._dead: dict[int, str] = {}  # slot -> why its worker is gone
        self._observing: dict[int, bool] = {}  # slot -> whether the step under way renders its cameras
        self._inbox: list[dict] = [{} for _ in range(processes)]  # (command, env index) -> reply not yet gathered
        self._context = mp.get_context("forkserver")
        # workers fork from one server that imported ManiSkill once, instead of each importing it (~8 s of CPU each)
        self._context.set_forkserver_preload(["bench.envs.cpu_workers", "mani_skill.envs"])  # the worker loop
        self._workers: list = [None] * processes  # (process, pipe) per worker, filled by the spawner
        # the processes start on a thread of their own (`_spawn_all`) while the caller does other work; every
        # method below waits for it (`_ready`) before it touches a worker
        self._spawner = threading.Thread(target=self._spawn_all, name="env-workers", daemon=True)
        self._spawn_failure: BaseException | None = None
        self._begin_lock = threading.Lock()  # between `begin_task` and the spawner: each new worker is sent it once
        self._stopping = False
        self.restarts = 0
        self._spawner.start()

    def _spawn_all(self) -> None:
        """Starts the worker processes one after another (the forkserver's import of ManiSkill, then ~0.4-0.8 s per
        process on the H100 machine, benchmarks/README.md section 0b); each begins building the task `begin_task`
        named, if any yet, as soon as it is up."""
        try:
            for worker in range(self.processes):
                if self._stopping:
                    return
                spawned = self._spawn()
                with self._begin_lock:
                    self._workers[worker] = spawned
                    begun = self._begun
                if begun is not None:
                    self._send_start(worker, begun)
        except BaseException as e:  # raised to the caller by `_ready`
            self._spawn_failure = e

    def _ready(self) -> None:
        """Waits until every worker process has started (at once after the first time)."""
        self._spawner.join()
        if self._spawn_failure is not None:
            failure, self._spawn_failure = self._spawn_failure, None
            raise failure

    def _spawn(self):
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self._torch_threads), daemon=True)
        process.start()
        child.close()
        return process, parent

    def _send_start(self, worker: int, spec: TaskSpec) -> None:
        """Asks `worker` to build `spec`'s envs for every slot it hosts (the replies are gathered by `start_task`)."""
        hosted = self._hosted(worker)
        self._send(hosted, "start", [spec] * len(hosted))

    def _hosted(self, worker: int) -> list[int]:
        return list(range(worker, self.num_envs, self.processes))

    def _by_worker(self, slots: Sequence[int]) -> dict[int, list[int]]:
        grouped: dict[int, list[int]] = {}
        for slot in slots:
            grouped.setdefault(int(slot) % self.processes, []).append(int(slot))
        return grouped

    def _lose(self, worker: int, why: str) -> None:
        """The worker is gone (died, or killed for not answering): every slot it hosts is dead for `why`."""
        self._dead.update({slot: why for slot in self._hosted(worker) if slot not in self._dead})

    def _describe(self, worker: int) -> str:
        return f"CPU env worker {worker} (pid {self._workers[worker][0].pid})"

    def _call(self, slots: Sequence[int], command: str, args: Sequence) -> dict[int, object]:
        """Sends `command` to each slot's worker and gathers the replies. A worker that died or did not answer in
        time has its slots recorded in `_dead` and no reply; errors raised inside a worker are raised here, after
        every reply is in."""
        self._send(slots, command, args)
        return self._gather(slots, command)

    def _send(self, slots: Sequence[int], command: str, args: Sequence) -> None:
        arg_of = dict(zip((int(s) for s in slots), args))
        for worker, hosted in self._by_worker(slots).items():
            try:
                self._workers[worker][1].send((command, {slot // self.processes: arg_of[slot] for slot in hosted}))
            except (BrokenPipeError, OSError):
                self._lose(worker, f"CPU env worker {worker} died before '{command}'")

    def _gather(self, slots: Sequence[int], command: str) -> dict[int, object]:
        timeout = self._timeouts[command]
        deadline = time.monotonic() + timeout  # one for all the slots: a call waits `timeout` at most, not per slot
        replies, failure = {}, None
        for worker, hosted in self._by_worker([s for s in slots if s not in self._dead]).items():
            process, conn = self._workers[worker]
            inbox = self._inbox[worker]
            wanted = [(command, slot // self.processes) for slot in hosted]
            try:
                while not all(key in inbox for key in wanted):  # replies to the other lane's command may come first
                    if not conn.poll(max(0.0, deadline - time.monotonic())):
                        _kill(process)
                        self._lose(worker, f"{self._describe(worker)} did not answer '{command}' within {timeout:g} "
                                           "s: killed")
                        break
                    answered, indices, status, payload = conn.recv()
                    for index in indices:
                        inbox[(answered, index)] = (status, payload[index] if status == "ok" else payload)
            except (EOFError, OSError):
                self._lose(worker, f"{self._describe(worker)} died during '{command}'")
            if hosted[0] in self._dead:
                continue
            for slot, key in zip(hosted, wanted):
                status, payload = inbox.pop(key)
                if status == "bench_error":
                    failure = failure or BenchError(payload)
                elif status == "error":
                    failure = failure or vulkan_error(payload) or RuntimeError(
                        f"CPU env worker {worker} (slot {slot}) failed: {payload}")
                replies[slot] = payload
        if failure is not None:
            raise failure
        return replies

    def _restart_dead(self) -> dict[int, object]:
        """A new worker for each one that is gone, started on the current task; returns its slots' "start" replies
        (the action bounds)."""
        started = {}
        for worker in sorted({slot % self.processes for slot in self._dead}):
            process, conn = self._workers[worker]
            conn.close()
            _kill(process)  # dead already, or killed for not answering: this reaps it
            self._workers[worker] = self._spawn()
            self._inbox[worker] = {}
            hosted = self._hosted(worker)
            for slot in hosted:
                self._dead.pop(slot, None)
            self.restarts += 1
            if self._spec is not None:
                started.update(self._call(hosted, "start", [self._spec] * len(hosted)))
        return started

    def _all(self, slots: Sequence[int], command: str, args: Sequence, sent: bool = False) -> list:
        """A command every slot must complete (start, reset): a worker that dies is restarted and asked once
        more; dying twice in a row is a broken setup, not bad luck, and ends the run. `sent`: the command went out
        already (`begin_task`); only the replies are gathered."""
        replies = self._gather(slots, command) if sent else self._call(slots, command, args)
        retry = [s for s in slots if s in self._dead]
        if retry:
            reasons = {s: self._dead[s] for s in retry}
            started = self._restart_dead()
            if command == "start":  # the new workers started the task as they came up
                replies.update(started)
            else:
                replies.update(self._call(retry, command, [args[list(slots).index(s)] for s in retry]))
            if any(s in self._dead for s in retry):
                raise RuntimeError(f"{reasons[min(reasons)]}, and again after a restart")
        return [replies[s] for s in slots]

    def begin_task(self, spec: TaskSpec) -> None:
        self._spec = spec
        if self._spawner.is_alive():
            with self._begin_lock:  # a worker spawned from now on is sent the task by the spawner; the others here
                started = [w for w in range(self.processes) if self._workers[w] is not None]
                self._begun = spec
            for worker in started:
                self._send_start(worker, spec)
            return
        self._ready()
        self._restart_dead()
        self._send(range(self.num_envs), "start", [spec] * self.num_envs)
        self._begun = spec

    def start_task(self, spec: TaskSpec) -> ActionBounds:
        self._ready()
        begun, self._begun = self._begun, None
        everyone = range(self.num_envs)
        if begun is spec:
            return self._all(everyone, "start", [spec] * self.num_envs, sent=True)[0]
        if begun is not None:  # another task was begun: its replies come first
            self._all(everyone, "start", [begun] * self.num_envs, sent=True)
        self._spec = spec
        self._restart_dead()
        return self._all(everyone, "start", [spec] * self.num_envs)[0]

    def reset(self, seeds: Sequence[int], observe: Sequence[bool] | None = None) -> Obs:
        if not 0 < len(seeds) <= self.num_envs:
            raise ValueError(f"reset needs 1..{self.num_envs} seeds, got {len(seeds)}")
        self._ready()
        self._restart_dead()
        self._active = len(seeds)
        mask = observe_mask(observe, len(seeds))
        return stack_obs(self._all(range(self._active), "reset", [(int(s), bool(o)) for s, o in zip(seeds, mask)]))

    def step_async(self, actions: np.ndarray, slots: Sequence[int], observe: Sequence[bool] | None = None) -> None:
        self._ready()
        mask = observe_mask(observe, len(slots))
        self._observing.update({int(s): bool(o) for s, o in zip(slots, mask)})
        live = [(s, a, o) for s, a, o in zip(slots, actions, mask) if s not in self._dead]
        self._send([s for s, _, _ in live], "step", [(a.astype(np.float32), bool(o)) for _, a, o in live])

    def step_wait(self, slots: Sequence[int]) -> StepOutput:
        replies = self._gather([s for s in slots if s not in self._dead], "step")
        obs, rewards, successes = zip(*(replies.get(s, ({}, 0.0, False)) for s in slots))  # a dead slot: zeros
        failed = {s: self._dead[s] for s in slots if s in self._dead}
        observed = np.array([self._observing[int(s)] and s not in failed for s in slots])
        return StepOutput(stack_obs(obs), np.array(rewards, np.float32), np.array(successes, bool), failed, observed)

    def render(self, slots: Sequence[int]) -> list[np.ndarray | None]:
        self._ready()
        live = [s for s in slots if s not in self._dead]
        replies = self._call(live, "render", [None] * len(live))
        return [replies.get(s) for s in slots]

    def close(self) -> None:
        """Asks every worker to close its envs and exit, reading whatever replies it still sends, and kills those
        that have not exited within CLOSE_TIMEOUT_S (one deadline for all): a hung worker never holds up the
        driver. Before any task started, the workers hold nothing (and may still be importing): they are killed, and
        those not started yet never are."""
        self._stopping = True
        self._spawner.join()
        self._spawn_failure = None
        live = [worker for worker in self._workers if worker is not None]
        deadline = time.monotonic() + (CLOSE_TIMEOUT_S if self._spec is not None else 0.0)
        for process, conn in live:
            if self._spec is not None:
                try:
                    conn.send(("close", {}))
                except (BrokenPipeError, OSError):
                    pass  # gone already: reaped below
        for process, conn in live:
            try:
                while conn.poll(max(0.0, deadline - time.monotonic())):
                    conn.recv()  # a reply left over from an interrupted call, then the close reply, then EOF
            except Exception:  # EOF once the worker has exited; or a stream cut by an interrupted read: kill below
                pass
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                _kill(process)
            conn.close()
        self._workers = []


def _kill(process) -> None:
    """SIGKILL (it ends a stopped process too) and reap; a process stuck in the kernel is not waited on for long."""
    process.kill()
    process.join(timeout=5)
