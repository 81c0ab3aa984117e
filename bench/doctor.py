"""`bench doctor`: what this machine can run (rendering, GPU physics, CUDA for torch and JAX, memory, cores), the
speed bench measured on this GPU (or on the ones it knows) and the --num-envs to start from for a policy.

Each probe that could crash the process (Vulkan, PhysX GPU, JAX) runs in a subprocess; nothing here allocates
GPU memory beyond torch's CUDA context.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from bench.envs import NO_VULKAN_FIX, NO_VULKAN_MESSAGES, gpu_physics_status, physx_gpu_library

GIB = 1024**3
# Measured (benchmarks/README.md): resident memory of one CPU env worker process (PickCube-v1, two 224x224 cameras),
# and per Pi model in bf16 on bench's inference path, peak GPU memory at batch 1 and the growth per extra batch row.
WORKER_RAM_GIB = 1.4
PI_GPU_GIB = {"pi0": (7.6, 0.075), "pi05": (8.1, 0.09)}
# Env slots share worker processes (`--env-processes`, one per core by default), and memory goes by process: on the
# H100 (NVIDIA Vulkan), PickCube-v1's workers held 14.3 GiB of GPU memory as 16 processes with 16 or 32 envs, 15.3
# with 64, 7.65 as 8 processes with 32 envs and 28.6 as 32 with 64; their proportional RAM grew by 0.01 GiB per
# further env (section 0d, 2026-11-24). Rounded up: per process, per env beyond a process's first.
PROCESS_GPU_GIB = 0.9
ENV_GPU_GIB = 0.02
ENV_RAM_GIB = 0.02
MAX_ENVS_PER_PROCESS = 4  # 32 slots in 8 processes: PegInsertionSide's physics bound its waves (section 0d)
# 32 on 16 cores, in 16 processes: six tasks x 100 of Pi0.5 in 310.1 s against 313.3 s at 64 (2026-11-24, section 0c)
WORKERS_PER_CORE = 2
# What bench measured per GPU (benchmarks/README.md sections 0 to 0d, 2026-11-22/24; CPU physics): env
# steps/s of PickCube with cameras every step / every 5th step / never, full-size Pi0.5 (bf16, bench's torch path)
# chunks/s at batch 64 alone, and the six-task x 100-episode time. Only GPUs measured are listed.
MEASURED_GPUS = {"NVIDIA H100 80GB HBM3": "16 CPU-physics workers: 260 / 824 / 2072 env steps/s with cameras every "
                                          "step / every 5th step / never (32 envs in 16 processes: 880 every 5th "
                                          "step); Pi0.5 alone 120.3 chunks/s at batch 64 (CUDA graphs, fused "
                                          "elementwise kernels); six tasks x 100 episodes in 261.5 and 271.8 s (two "
                                          "runs) at 32 slots in 16 processes (352 env steps/s inside waves, 22-32 s "
                                          "start-up); 64 slots is the most its GPU memory held with a process per "
                                          "slot"}
MEASURED_CPU = ("2 workers on a 2-core machine, lavapipe: 24.5 / 78.6 / 200.7 env steps/s with cameras every step / "
                "every 5th step / never")
MEASURE_HERE = ("measure here with `python benchmarks/env_throughput.py --backend cpu --num-envs 16 --observe-every 1 5 "
                "0` and `python benchmarks/pi_throughput.py --model pi05`")


@dataclass
class Check:
    name: str
    ok: bool | None  # None: informational
    detail: str


@dataclass
class Machine:
    cores: int
    ram_available_gib: float
    cuda: bool
    gpu_free_gib: float | None
    gpu_physics: bool
    gpu_name: str | None = None
    gpu_renders: bool = False  # Vulkan draws on the GPU (not lavapipe): every CPU env worker holds GPU memory


def _probe(code: str, env: dict | None = None, timeout: float = 120) -> tuple[bool, str]:
    """Runs `code` in a fresh interpreter: (exit code 0, last line of stdout or of stderr)."""
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return False, f"no answer in {timeout:.0f} s"
    lines = (result.stdout if result.returncode == 0 else result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else f"exit code {result.returncode}"


@dataclass(frozen=True)
class Vulkan:
    """What SAPIEN's Vulkan probe found: every device it lists and the one a RenderSystem picks (`renders_with`), or
    why it cannot render (`error`)."""
    listed: tuple[str, ...] = ()
    renders_with: str | None = None
    error: str | None = None

    @property
    def on_gpu(self) -> bool:
        """The picked device is a GPU, not lavapipe (llvmpipe): every env worker's renderer then holds GPU memory."""
        return self.renders_with is not None and "llvmpipe" not in self.renders_with

    def describe(self) -> str:
        """The devices in the words `bench record` writes into bench.json and `bench check` compares."""
        if self.error is not None:
            return self.error
        software = self.renders_with is not None and not self.on_gpu
        note = "; software rendering on the CPU (lavapipe): expect ~6 env steps/s per core" if software else ""
        return (", ".join(self.listed) or NO_VULKAN_FIX) + note


def probe_vulkan() -> Vulkan:
    ok, line = _probe("import json, sapien; system = sapien.render.RenderSystem(); "
                      "summary = sapien.render.get_device_summary(); print(json.dumps("
                      "[[l for l in summary.splitlines() if l and not l[0].isspace()], system.device.name]))")
    if not ok:
        return Vulkan(error=NO_VULKAN_FIX if any(m in line for m in NO_VULKAN_MESSAGES) else f"SAPIEN failed: {line}")
    listed, renders_with = json.loads(line)
    return Vulkan(tuple(listed), renders_with)


def vulkan_check(vulkan: Vulkan) -> Check:
    return Check("Vulkan rendering", vulkan.error is None and bool(vulkan.listed), vulkan.describe())


def gpu_physics_check() -> Check:
    import sapien

    ok, why = gpu_physics_status()
    if ok:
        return Check("GPU physics (PhysX)", True, f"{why}: --sim-backend auto uses it")
    if not physx_gpu_library().is_file():  # the part a user can fix offline: say where the file comes from
        why += (f"; without CUDA or without {physx_gpu_library().name} at {physx_gpu_library().parent}, runs use CPU "
                "physics workers. The file is in https://github.com/sapien-sim/physx-precompiled/releases/download/"
                f"{sapien.physx.version()}/linux-so.zip: download it on a machine with internet and copy it there")
    return Check("GPU physics (PhysX)", False, why)


def torch_check() -> tuple[Check, float | None, str | None]:
    """The check, the GPU's free memory in GiB and its name (None, None without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return Check("CUDA for torch", False, f"torch {torch.__version__}: no CUDA device (Pi models run on CPU, "
                                              "slowly)"), None, None
    free, total = torch.cuda.mem_get_info()
    name = torch.cuda.get_device_name()
    return Check("CUDA for torch", True, f"{name}, {free / GIB:.1f} of {total / GIB:.1f} GiB free "
                                         f"(torch {torch.__version__})"), free / GIB, name


def jax_check() -> Check:
    if importlib.util.find_spec("jax") is None:
        return Check("CUDA for JAX", None, "JAX not installed here (openpi checkpoints run from .venv-openpi)")
    ok, line = _probe("import jax; print(', '.join(sorted({d.platform for d in jax.devices()})))",
                      env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    if not ok:
        return Check("CUDA for JAX", False, f"JAX failed to start: {line}")
    return Check("CUDA for JAX", "gpu" in line or "cuda" in line, f"JAX devices: {line}")


def measured_speed_check(machine: Machine) -> Check:
    """What bench measured on this GPU, or on the GPUs it knows when this one was never measured: the speed to
    expect before a long run, and the commands that measure it here."""
    if machine.gpu_name in MEASURED_GPUS:
        return Check("Speed bench measured", None, f"on this GPU ({machine.gpu_name}): "
                                                   f"{MEASURED_GPUS[machine.gpu_name]} (benchmarks/README.md)")
    known = "; ".join(f"{name}: {figures}" for name, figures in MEASURED_GPUS.items())
    if machine.gpu_name is None:
        return Check("Speed bench measured", None, f"no GPU: {MEASURED_CPU}. With a GPU, on {known} "
                                                   "(benchmarks/README.md)")
    return Check("Speed bench measured", None, f"never on {machine.gpu_name}; on {known} (benchmarks/README.md); "
                                               f"{MEASURE_HERE}")


def _ram_available_gib() -> float:
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["MemAvailable"].split()[0]) * 1024 / GIB


@dataclass(frozen=True)
class Recommendation:
    num_envs: int
    processes: int | None  # CPU worker processes hosting them; None: the run's default, one per core
    why: str

    def flags(self) -> str:
        processes = "" if self.processes is None else f" --env-processes {self.processes}"
        return f"--num-envs {self.num_envs}{processes}"


def recommend_num_envs(machine: Machine, model: str | None) -> Recommendation:
    """Env slots for a run, and the worker processes to host them: as many slots as the cores serve
    (WORKERS_PER_CORE), in a process per core, with fewer processes (up to MAX_ENVS_PER_PROCESS envs each), then
    fewer slots, until the workers fit in RAM and, where their renderers draw on the GPU, in GPU memory beside a Pi
    model on CUDA (its weights plus one lane's batch: the runner's two lanes each query the policy for half the
    slots)."""
    if machine.gpu_physics:
        return Recommendation(64, None, "GPU physics: sub-scenes are cheap; raise it while env steps/s grows "
                                        "(benchmarks/env_throughput.py)")
    weights, per_row = PI_GPU_GIB[model] if model in PI_GPU_GIB and machine.cuda else (0.0, 0.0)
    ram = machine.ram_available_gib * 0.8
    gpu = float("inf") if machine.gpu_free_gib is None else machine.gpu_free_gib * 0.9 - weights

    def short_of(slots: int, processes: int) -> str | None:
        """The memory the workers would not fit in, or None."""
        further = slots - processes
        if processes * WORKER_RAM_GIB + further * ENV_RAM_GIB > ram:
            return "RAM"
        renderers = processes * PROCESS_GPU_GIB + further * ENV_GPU_GIB if machine.gpu_renders else 0.0
        return "GPU memory" if renderers + per_row * slots / 2 > gpu else None

    most = WORKERS_PER_CORE * machine.cores
    for slots in range(most, 0, -1):
        for processes in range(min(slots, machine.cores), -(-slots // MAX_ENVS_PER_PROCESS) - 1, -1):
            if short_of(slots, processes) is None:
                bound = short_of(most, min(most, machine.cores))
                why = (f"{WORKERS_PER_CORE} slots per core ({machine.cores} cores), a worker process per core"
                       if bound is None else f"what fits in {bound} ({_memory(machine, model)})")
                return Recommendation(slots, None if processes == min(slots, machine.cores) else processes, why)
    return Recommendation(1, None, f"not even one env worker fits in {short_of(1, 1)} ({_memory(machine, model)})")


def _memory(machine: Machine, model: str | None) -> str:
    gpu = "" if machine.gpu_free_gib is None else f", {machine.gpu_free_gib:.1f} GiB GPU memory free"
    return (f"{machine.ram_available_gib:.1f} GiB RAM available{gpu}; per worker process {WORKER_RAM_GIB} GiB RAM"
            + (f" and {PROCESS_GPU_GIB} GiB GPU memory for its renderer" if machine.gpu_renders else "")
            + (f"; {model} on the GPU" if model in PI_GPU_GIB and machine.cuda else ""))


def diagnose(model: str | None) -> tuple[list[Check], Recommendation]:
    cores = len(os.sched_getaffinity(0))
    vulkan = probe_vulkan()
    checks = [vulkan_check(vulkan), gpu_physics_check()]
    torch_result, gpu_free, gpu_name = torch_check()
    checks += [torch_result, jax_check()]
    ram = _ram_available_gib()
    checks.append(Check("CPU and memory", None, f"{cores} usable cores, {ram:.1f} GiB RAM available"))
    machine = Machine(cores, ram, torch_result.ok, gpu_free, checks[1].ok, gpu_name, vulkan.on_gpu)
    checks.append(measured_speed_check(machine))
    return checks, recommend_num_envs(machine, model)
