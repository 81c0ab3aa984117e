"""Environments: N ManiSkill episodes stepped in lockstep, on GPU physics or on CPU worker processes.

Both backends expose the same `BatchedEnvs` interface. A batch is reset together (no partial resets), so a
wave of up to N episodes starts together and runs the task's whole step budget. Observations come back as
flat dicts of numpy arrays ("sensor_data/base_camera/rgb" -> [k, H, W, 3]) with one row per active episode.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.tasks import TaskSpec

OBS_MODE = "rgb+state_dict"  # camera images plus the simulator state that privileged experts read
NO_VULKAN_FIX = (
    "no Vulkan device for rendering: install Mesa >= 24.3 (lavapipe) with `bash scripts/install-system-deps.sh` "
    "(Debian bookworm-backports), or run on a machine with a GPU driver"
)

Obs = dict[str, np.ndarray]
ActionBounds = tuple[np.ndarray, np.ndarray]  # (low, high) of one env's action


@dataclass
class StepOutput:
    obs: Obs
    reward: np.ndarray  # [k] float
    success: np.ndarray  # [k] bool
    failed: dict[int, str] = field(default_factory=dict)  # slot -> why its env is gone (its rows are zeros)


def make_maniskill_env(spec: TaskSpec, num_envs: int, sim_backend: str, obs_mode: str = OBS_MODE):
    """Builds the ManiSkill env for a task spec; the one place that turns a spec into gym.make arguments."""
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the tasks)

    height, width = spec.image_size
    side = height * len(spec.cameras)  # third-person view as tall as the policy's cameras stacked (videos)
    env = gym.make(
        spec.id,
        num_envs=num_envs,
        obs_mode=obs_mode,
        robot_uids=spec.robot,
        control_mode=spec.control_mode,
        reward_mode=spec.reward_mode,
        sensor_configs=dict(width=width, height=height),
        render_mode="rgb_array",
        human_render_camera_configs=dict(width=side, height=side),
        sim_backend=sim_backend,
        sim_config=dict(sim_freq=spec.sim_freq, control_freq=spec.control_freq),
        max_episode_steps=spec.max_steps,
    )
    unwrapped = env.unwrapped
    hidden = {obj.name: obj for obj in unwrapped._hidden_objects}
    for name in spec.show_hidden:
        if name not in hidden:
            raise BenchError(f"{spec.id}: show_hidden names '{name}', but the hidden objects are {sorted(hidden)}")
        unwrapped._hidden_objects.remove(hidden[name])
        hidden[name].show_visual()  # ManiSkill hid it when it built the scene; off the list it is never hidden again
    if "sensor_data" in obs_mode or "rgb" in obs_mode:
        missing = set(spec.cameras) - set(unwrapped._sensors)
        if missing:
            raise BenchError(f"{spec.id}: cameras {sorted(missing)} not in {sorted(unwrapped._sensors)}; fix `cameras`")
    return env


def flatten_obs(obs: dict, prefix: str = "") -> Obs:
    """Nested ManiSkill observation -> {"a/b/c": numpy array with the batch as first axis}."""
    flat: Obs = {}
    for key, value in obs.items():
        if isinstance(value, dict):
            flat.update(flatten_obs(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)
    return flat


def stack_obs(rows: Sequence[Obs]) -> Obs:
    return {key: np.concatenate([row[key] for row in rows]) for key in rows[0]}


# What SAPIEN raises when Vulkan has no usable device: an old Mesa ("failed to find a rendering device") or no driver
# at all (the loader's vk::createInstanceUnique fails). Other rendering errors keep their own message.
NO_VULKAN_MESSAGES = ("failed to find a rendering device", "vk::createInstanceUnique: ErrorIncompatibleDriver",
                      "vk::createInstanceUnique: ErrorInitializationFailed")


def _as_bench_error(message: str) -> BenchError | None:
    return BenchError(NO_VULKAN_FIX) if any(m in message for m in NO_VULKAN_MESSAGES) else None


class BatchedEnvs(ABC):
    """N environment slots stepped in lockstep; a wave uses slots 0..k-1 for k <= N episodes."""

    backend: str
    num_envs: int
    restarts: int = 0  # env workers replaced after dying
    _active: int = 0  # slots of the current wave

    @abstractmethod
    def start_task(self, spec: TaskSpec) -> ActionBounds:
        """Builds the task's environments; returns the controller's action bounds."""

    @abstractmethod
    def reset(self, seeds: Sequence[int]) -> Obs:
        """Starts len(seeds) <= num_envs episodes, one per slot, from their pinned initial states."""

    independent_slots: bool = False  # can a subset of the slots step while the others wait (lanes, see runner)

    @abstractmethod
    def step_async(self, actions: np.ndarray, slots: Sequence[int]) -> None:
        """Starts stepping `slots` (active ones) with actions [len(slots), action_dim]; `step_wait` collects."""

    @abstractmethod
    def step_wait(self, slots: Sequence[int]) -> StepOutput:
        """The step started by `step_async(..., slots)`: rows in the order of `slots`."""

    def step(self, actions: np.ndarray, slots: Sequence[int] | None = None) -> StepOutput:
        """Steps `slots` (default: every active slot) with actions [len(slots), action_dim] and waits."""
        slots = range(self._active) if slots is None else slots
        self.step_async(actions, slots)
        return self.step_wait(slots)

    @abstractmethod
    def render(self, slots: Sequence[int]) -> list[np.ndarray | None]:
        """Third-person RGB views [H, W, 3] of the given active slots (ManiSkill's human render camera); None for
        a slot whose env is gone."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- CPU physics: one ManiSkill env (num_envs=1) per worker process ---------------------------------------


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
                spec, obs_mode = arg
                env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu", obs_mode=obs_mode)
                reply = (env.action_space.low.reshape(-1), env.action_space.high.reshape(-1))
            elif command == "reset":
                obs, _ = env.reset(seed=arg)
                reply = flatten_obs(obs)
            elif command == "step":
                obs, reward, _, _, info = env.step(arg)
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
    six commands over a pipe; only the slots being recorded are asked to render. A worker that dies mid-episode
    (crash, OOM kill) ends only its own slot's episode: `step` reports the slot in `failed` and leaves it out
    until the next `reset` starts a new worker.
    """

    backend = "cpu"
    independent_slots = True

    def __init__(self, num_envs: int, torch_threads: int | None = 1, obs_mode: str = OBS_MODE):
        self.num_envs = num_envs
        self._torch_threads = torch_threads
        self._obs_mode = obs_mode  # benchmarks compare against "state_dict" (no rendering)
        self._active = 0
        self._spec: TaskSpec | None = None
        self._dead: dict[int, str] = {}
        self._blank_obs: Obs = {}
        self._context = mp.get_context("forkserver")
        # workers fork from one server that imported ManiSkill once, instead of each importing it (~8 s of CPU each)
        self._context.set_forkserver_preload(["bench.envs", "mani_skill.envs"])
        self._workers = [self._spawn() for _ in range(num_envs)]
        self.restarts = 0

    def _spawn(self):
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, self._torch_threads), daemon=True)
        process.start()
        child.close()
        return process, parent

    def _call(self, slots: Sequence[int], command: str, args: Sequence) -> dict[int, object]:
        """Sends `command` to each slot's worker and gathers the replies. A worker that died is recorded in
        `_dead` and has no reply; errors raised inside a worker are raised here, after every reply is in."""
        self._send(slots, command, args)
        return self._gather(slots, command)

    def _send(self, slots: Sequence[int], command: str, args: Sequence) -> None:
        for slot, arg in zip(slots, args):
            try:
                self._workers[slot][1].send((command, arg))
            except (BrokenPipeError, OSError):
                self._dead[slot] = f"CPU env worker {slot} died before '{command}'"

    def _gather(self, slots: Sequence[int], command: str) -> dict[int, object]:
        replies, failure = {}, None
        for slot in slots:
            if slot in self._dead:
                continue
            process, conn = self._workers[slot]
            try:
                status, payload = conn.recv()
            except (EOFError, OSError):
                self._dead[slot] = f"CPU env worker {slot} (pid {process.pid}) died during '{command}'"
                continue
            if status == "bench_error":
                failure = failure or BenchError(payload)
            elif status == "error":
                failure = failure or _as_bench_error(payload) or RuntimeError(f"CPU env worker {slot} failed: {payload}")
            replies[slot] = payload
        if failure is not None:
            raise failure
        return replies

    def _restart_dead(self) -> None:
        for slot in sorted(self._dead):
            process, conn = self._workers[slot]
            conn.close()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
            self._workers[slot] = self._spawn()
            del self._dead[slot]
            self.restarts += 1
            if self._spec is not None:
                self._call([slot], "start", [(self._spec, self._obs_mode)])

    def _all(self, slots: Sequence[int], command: str, args: Sequence) -> list:
        """A command every slot must complete (start, reset): a worker that dies is restarted and asked once
        more; dying twice in a row is a broken setup, not bad luck, and ends the run."""
        replies = self._call(slots, command, args)
        if self._dead:
            retry = sorted(self._dead)
            reasons = dict(self._dead)
            self._restart_dead()
            replies.update(self._call(retry, command, [args[list(slots).index(s)] for s in retry]))
            if self._dead:
                raise RuntimeError(f"{reasons[min(reasons)]}, and again after a restart")
        return [replies[s] for s in slots]

    def start_task(self, spec: TaskSpec) -> ActionBounds:
        self._spec = spec
        self._restart_dead()
        return self._all(range(self.num_envs), "start", [(spec, self._obs_mode)] * self.num_envs)[0]

    def reset(self, seeds: Sequence[int]) -> Obs:
        if not 0 < len(seeds) <= self.num_envs:
            raise ValueError(f"reset needs 1..{self.num_envs} seeds, got {len(seeds)}")
        self._restart_dead()
        self._active = len(seeds)
        rows = self._all(range(self._active), "reset", [int(s) for s in seeds])
        self._blank_obs = {key: np.zeros_like(value) for key, value in rows[0].items()}  # a dead slot's rows
        return stack_obs(rows)

    def step_async(self, actions: np.ndarray, slots: Sequence[int]) -> None:
        live = [(s, a) for s, a in zip(slots, actions) if s not in self._dead]
        self._send([s for s, _ in live], "step", [a.astype(np.float32) for _, a in live])

    def step_wait(self, slots: Sequence[int]) -> StepOutput:
        replies = self._gather([s for s in slots if s not in self._dead], "step")
        blank = (self._blank_obs, 0.0, False)
        obs, rewards, successes = zip(*(replies.get(s, blank) for s in slots))
        failed = {s: self._dead[s] for s in slots if s in self._dead}
        return StepOutput(stack_obs(obs), np.array(rewards, np.float32), np.array(successes, bool), failed)

    def render(self, slots: Sequence[int]) -> list[np.ndarray | None]:
        live = [s for s in slots if s not in self._dead]
        replies = self._call(live, "render", [None] * len(live))
        return [replies.get(s) for s in slots]

    def close(self) -> None:
        if self._spec is None:  # no task started: the workers hold nothing, and may still be importing
            for process, _ in self._workers:
                process.kill()
                process.join()
            self._workers = []
            return
        for process, conn in self._workers:
            try:
                conn.send(("close", None))
                conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._workers = []


# --- GPU physics: N sub-scenes in one process -------------------------------------------------------------


class GpuEnvs(BatchedEnvs):
    """ManiSkill GPU physics (`physx_cuda`) with num_envs sub-scenes.

    GPU resets draw every sub-scene's randomness from one stream seeded by the first seed, so an episode's
    initial state would depend on its slot and on N. To pin episodes, each initial state is generated by a
    state-only CPU env reset with the episode's own seed (exactly what the CPU backend starts from) and
    loaded into the GPU scene through ManiSkill's `reset_to_env_states`.
    """

    backend = "gpu"

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self._env = None
        self._oracle = None
        self._active = 0
        self._actions: np.ndarray | None = None

    def start_task(self, spec: TaskSpec) -> ActionBounds:
        if spec.id in GEOMETRY_RANDOMIZED_TASKS:
            raise BenchError(
                f"{spec.id} draws its object shapes when the scene is built, so its episodes are pinned only "
                "on CPU physics: run it with --sim-backend cpu"
            )
        self.close()
        self._env = make_maniskill_env(spec, num_envs=self.num_envs, sim_backend="physx_cuda")
        self._oracle = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu", obs_mode="state_dict")
        space = self._env.unwrapped.single_action_space
        return space.low.reshape(-1), space.high.reshape(-1)

    def _initial_state(self, seed: int) -> dict:
        self._oracle.reset(seed=int(seed))
        return self._oracle.unwrapped.get_state_dict()

    def reset(self, seeds: Sequence[int]) -> Obs:
        import torch

        if not 0 < len(seeds) <= self.num_envs:
            raise ValueError(f"reset needs 1..{self.num_envs} seeds, got {len(seeds)}")
        self._active = len(seeds)
        padded = list(seeds) + [seeds[0]] * (self.num_envs - len(seeds))
        states = [self._initial_state(s) for s in padded]
        batched = _stack_state_dicts(states, torch, self._env.unwrapped.device)
        obs, _ = self._env.reset(seed=[int(s) for s in padded], options={"reset_to_env_states": {"env_states": batched}})
        return {k: v[: self._active] for k, v in flatten_obs(obs).items()}

    def step_async(self, actions: np.ndarray, slots: Sequence[int]) -> None:
        if list(slots) != list(range(self._active)):
            raise ValueError("GPU physics steps every sub-scene together: pass all active slots")
        self._actions = actions

    def step_wait(self, slots: Sequence[int]) -> StepOutput:
        import torch

        full = np.zeros((self.num_envs, self._actions.shape[1]), np.float32)
        full[: self._active] = self._actions
        obs, reward, _, _, info = self._env.step(torch.as_tensor(full, device=self._env.unwrapped.device))
        k = self._active
        flat = {key: v[:k] for key, v in flatten_obs(obs).items()}
        return StepOutput(flat, reward.cpu().numpy()[:k].astype(np.float32), info["success"].cpu().numpy()[:k])

    def render(self, slots: Sequence[int]) -> list[np.ndarray]:
        views = self._env.render().cpu().numpy()  # every sub-scene is rendered in one pass
        return [views[slot] for slot in slots]

    def close(self) -> None:
        for env in (self._env, self._oracle):
            if env is not None:
                env.close()
        self._env = self._oracle = None


# Tasks whose object geometry is sampled at scene build time (not part of the simulator state).
GEOMETRY_RANDOMIZED_TASKS = frozenset({"PegInsertionSide-v1"})


def _stack_state_dicts(states: list[dict], torch, device) -> dict:
    first = states[0]
    if isinstance(first, dict):
        return {key: _stack_state_dicts([s[key] for s in states], torch, device) for key in first}
    return torch.cat([torch.as_tensor(s) for s in states]).to(device)


# --- choosing a backend -----------------------------------------------------------------------------------


def physx_gpu_library() -> Path:
    """Where SAPIEN looks for (and otherwise downloads) the PhysX GPU library."""
    import sapien

    return Path.home() / ".sapien" / "physx" / sapien.physx.version() / "libPhysXGpu_64.so"


_GPU_PROBE = """
import sapien
sapien.physx.enable_gpu()
sapien.physx.PhysxGpuSystem()
print("ok")
"""


def gpu_physics_status() -> tuple[bool, str]:
    """(can start, why): checks CUDA and the PhysX GPU library, then starts a GPU PhysX system in a subprocess."""
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device visible to torch"
    library = physx_gpu_library()
    if not library.is_file():
        return False, (
            f"PhysX GPU library missing at {library}; SAPIEN downloads it from GitHub on first use, which this "
            "machine cannot reach: copy libPhysXGpu_64.so for this PhysX version there"
        )
    probe = subprocess.run([sys.executable, "-c", _GPU_PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or "ok" not in probe.stdout:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return False, f"GPU PhysX failed to start: {lines[-1] if lines else f'exit code {probe.returncode}'}"
    return True, "CUDA device and PhysX GPU library present"


def open_envs(sim_backend: str, num_envs: int) -> tuple[BatchedEnvs, str]:
    """Opens the requested backend ("auto", "gpu" or "cpu") and says why it was chosen."""
    if sim_backend not in ("auto", "gpu", "cpu"):
        raise BenchError(f"unknown --sim-backend '{sim_backend}': use auto, gpu or cpu")
    if sim_backend in ("auto", "gpu"):
        ok, why = gpu_physics_status()
        if ok:
            return GpuEnvs(num_envs), f"GPU physics: {why}"
        if sim_backend == "gpu":
            raise BenchError(f"--sim-backend gpu cannot start: {why}; or use --sim-backend cpu")
        return CpuWorkerEnvs(num_envs), f"CPU workers ({num_envs}): GPU physics unavailable ({why})"
    return CpuWorkerEnvs(num_envs), f"CPU workers ({num_envs}): requested"


def default_num_envs() -> int:
    return max(1, min(os.cpu_count() or 1, 16))
