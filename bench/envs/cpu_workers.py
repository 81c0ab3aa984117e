"""CPU physics: one ManiSkill env (num_envs=1) per worker process, driven over a pipe (`CpuWorkerEnvs`)."""

from __future__ import annotations

import multiprocessing as mp
import signal
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


def _worker_main(conn, torch_threads: int | None) -> None:
    """Worker loop. Persistent across tasks so the ~20 s of imports are paid once per run, not per task.

    Ctrl-C reaches the whole process group; workers ignore it and let the driver shut them down in order.
    ManiSkill computes observations with small torch ops; with torch's default of one thread per core in every
    worker, N workers oversubscribe the cores N times over, so workers use `torch_threads` (default 1).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    env = None
    while True:
        command, arg = conn.recv()
        try:
            if command == "start":
                if env is not None:
                    env.close()
                env = make_maniskill_env(arg, num_envs=1, sim_backend="physx_cpu")
                reply = (env.action_space.low.reshape(-1), env.action_space.high.reshape(-1))
            elif command == "reset":
                seed, observe = arg
                with cameras(env, on=observe):
                    obs, _ = env.reset(seed=seed)
                reply = flatten_obs(obs)
            elif command == "step":
                action, observe = arg
                with cameras(env, on=observe):
                    obs, reward, _, _, info = env.step(action)
                reply = (flatten_obs(obs), float(reward), bool(info["success"]))
            elif command == "render":
                reply = env.render()[0].cpu().numpy()
            elif command == "close":
                if env is not None:
                    env.close()
                conn.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {command}")
            conn.send(("ok", reply))
        except BenchError as e:
            conn.send(("bench_error", str(e)))
        except Exception as e:  # sent back so the driver can report it with the worker's traceback
            conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


class CpuWorkerEnvs(BatchedEnvs):
    """N worker processes, each with its own CPU-physics env.

    gymnasium's AsyncVectorEnv does not fit: it is rebuilt per task (paying worker imports again), always
    steps every env (a short last wave would waste work) and has no per-slot restart. The protocol here is
    five commands over a pipe; only the slots being recorded are asked to render. A worker that dies mid-episode
    (crash, OOM kill) ends only its own slot's episode: `step` reports the slot in `failed` and leaves it out
    until the next `reset` starts a new worker.

    A worker that hangs without dying (a deadlock in a native library, a stopped process) is treated exactly like
    one that died: every wait for replies has one deadline for all the slots asked, and a worker that has not
    answered by then is killed (SIGKILL, which also ends a stopped process) and reported with the slot, pid,
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

    def __init__(self, num_envs: int, torch_threads: int | None = 1,
                 step_timeout_s: float | None = None, start_timeout_s: float | None = None):
        step = DEFAULT_STEP_TIMEOUT_S if step_timeout_s is None else step_timeout_s
        start = max(DEFAULT_START_TIMEOUT_S, step) if start_timeout_s is None else start_timeout_s
        if not (step > 0 and start > 0):
            raise ValueError(f"worker timeouts must be positive, got step {step} s and start {start} s")
        self._timeouts = {"start": start, "reset": start, "step": step, "render": step}
        self.num_envs = num_envs
        self._torch_threads = torch_threads
        self._active = 0
        self._spec: TaskSpec | None = None
        self._begun: TaskSpec | None = None  # the task whose "start" went out with begin_task, not yet gathered
        self._dead: dict[int, str] = {}
        self._observing: dict[int, bool] = {}  # slot -> whether the step under way renders its cameras
        self._context = mp.get_context("forkserver")
        # workers fork from one server that imported ManiSkill once, instead of each importing it (~8 s of CPU each)
        self._context.set_forkserver_preload(["bench.envs.cpu_workers", "mani_skill.envs"])  # the worker loop
        self._workers = [self._spawn() for _ in range(num_envs)]
        self.restarts = 0

    def _spawn(self):
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self._torch_threads), daemon=True)
        process.start()
        child.close()
        return process, parent

    def _call(self, slots: Sequence[int], command: str, args: Sequence) -> dict[int, object]:
        """Sends `command` to each slot's worker and gathers the replies. A worker that died or did not answer in
        time is recorded in `_dead` and has no reply; errors raised inside a worker are raised here, after every
        reply is in."""
        self._send(slots, command, args)
        return self._gather(slots, command)

    def _send(self, slots: Sequence[int], command: str, args: Sequence) -> None:
        for slot, arg in zip(slots, args):
            try:
                self._workers[slot][1].send((command, arg))
            except (BrokenPipeError, OSError):
                self._dead[slot] = f"CPU env worker {slot} died before '{command}'"

    def _gather(self, slots: Sequence[int], command: str) -> dict[int, object]:
        timeout = self._timeouts[command]
        deadline = time.monotonic() + timeout  # one for all the slots: a call waits `timeout` at most, not per slot
        replies, failure = {}, None
        for slot in slots:
            if slot in self._dead:
                continue
            process, conn = self._workers[slot]
            try:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    _kill(process)
                    self._dead[slot] = (f"CPU env worker {slot} (pid {process.pid}) did not answer '{command}' "
                                        f"within {timeout:g} s: killed")
                    continue
                status, payload = conn.recv()
            except (EOFError, OSError):
                self._dead[slot] = f"CPU env worker {slot} (pid {process.pid}) died during '{command}'"
                continue
            if status == "bench_error":
                failure = failure or BenchError(payload)
            elif status == "error":
                failure = failure or vulkan_error(payload) or RuntimeError(f"CPU env worker {slot} failed: {payload}")
            replies[slot] = payload
        if failure is not None:
            raise failure
        return replies

    def _restart_dead(self) -> None:
        for slot in sorted(self._dead):
            process, conn = self._workers[slot]
            conn.close()
            _kill(process)  # dead already, or killed for not answering: this reaps it
            self._workers[slot] = self._spawn()
            del self._dead[slot]
            self.restarts += 1
            if self._spec is not None:
                self._call([slot], "start", [self._spec])

    def _all(self, slots: Sequence[int], command: str, args: Sequence, sent: bool = False) -> list:
        """A command every slot must complete (start, reset): a worker that dies is restarted and asked once
        more; dying twice in a row is a broken setup, not bad luck, and ends the run. `sent`: the command went out
        already (`begin_task`); only the replies are gathered."""
        replies = self._gather(slots, command) if sent else self._call(slots, command, args)
        if self._dead:
            retry = sorted(self._dead)
            reasons = dict(self._dead)
            self._restart_dead()
            replies.update(self._call(retry, command, [args[list(slots).index(s)] for s in retry]))
            if self._dead:
                raise RuntimeError(f"{reasons[min(reasons)]}, and again after a restart")
        return [replies[s] for s in slots]

    def begin_task(self, spec: TaskSpec) -> None:
        self._spec = spec
        self._restart_dead()
        self._send(range(self.num_envs), "start", [spec] * self.num_envs)
        self._begun = spec

    def start_task(self, spec: TaskSpec) -> ActionBounds:
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
        self._restart_dead()
        self._active = len(seeds)
        mask = observe_mask(observe, len(seeds))
        return stack_obs(self._all(range(self._active), "reset", [(int(s), bool(o)) for s, o in zip(seeds, mask)]))

    def step_async(self, actions: np.ndarray, slots: Sequence[int], observe: Sequence[bool] | None = None) -> None:
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
        live = [s for s in slots if s not in self._dead]
        replies = self._call(live, "render", [None] * len(live))
        return [replies.get(s) for s in slots]

    def close(self) -> None:
        """Asks every worker to close its env and exit, reading whatever replies it still sends, and kills those
        that have not exited within CLOSE_TIMEOUT_S (one deadline for all): a hung worker never holds up the
        driver. Before any task started, the workers hold nothing (and may still be importing): they are killed."""
        deadline = time.monotonic() + (CLOSE_TIMEOUT_S if self._spec is not None else 0.0)
        if self._spec is not None:
            self._send(range(len(self._workers)), "close", [None] * len(self._workers))
        for process, conn in self._workers:
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
