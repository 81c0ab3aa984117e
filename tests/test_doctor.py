"""`bench doctor` on this machine (real probes) and its --num-envs arithmetic."""

import torch

from bench.doctor import (ENV_GPU_GIB, MAX_ENVS_PER_PROCESS, MEASURED_CPU, MEASURED_GPUS, PI_GPU_GIB, PROCESS_GPU_GIB,
                          WORKER_RAM_GIB, WORKERS_PER_CORE, Machine, Vulkan, measured_speed_check,
                          probe_vulkan, recommend_num_envs)


def test_doctor_reports_this_machine(bench):
    code, text = bench("doctor", "--policy", "pi05")
    assert code == 0, text  # rendering works here (lavapipe)
    for check in ("Vulkan rendering", "GPU physics (PhysX)", "CUDA for torch", "CUDA for JAX", "CPU and memory"):
        assert check in text
    assert "libPhysXGpu_64.so" in text  # the GPU physics library's place, or why it cannot start
    assert "recommended: --num-envs" in text
    assert "Speed bench measured" in text
    if not torch.cuda.is_available():  # the CPU machine's figures
        assert "lavapipe" in text


def test_vulkan_probe_names_the_device_sapien_renders_with():
    """The GPU-memory limit counts renderers only when the device SAPIEN picks is a GPU: decided from that device,
    not from the list (a machine can list lavapipe beside an NVIDIA GPU)."""
    here = probe_vulkan()
    assert here.error is None and any(here.renders_with in line for line in here.listed)
    if not torch.cuda.is_available():  # the CPU machine: lavapipe only
        assert not here.on_gpu and "software rendering" in here.describe()
    lavapipe, nvidia = "llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H100 80GB HBM3"
    both = Vulkan((f"GPU: {nvidia}", f"GPU: {lavapipe}"), nvidia)
    assert both.on_gpu and both.describe() == f"GPU: {nvidia}, GPU: {lavapipe}"
    assert not Vulkan(both.listed, lavapipe).on_gpu
    assert not Vulkan(error="no Vulkan driver").on_gpu


def test_num_envs_follows_the_tightest_limit():
    """Slots as the cores serve them, in a process per core; where memory is short, fewer processes (each hosting
    more envs: memory goes by process), then fewer slots."""
    cpu_only = Machine(cores=2, ram_available_gib=64, cuda=False, gpu_free_gib=None, gpu_physics=False)
    both_cores = recommend_num_envs(cpu_only, "pi05")
    assert (both_cores.num_envs, both_cores.processes) == (WORKERS_PER_CORE * 2, None)  # None: a process per core
    assert both_cores.flags() == "--num-envs 4" and "per core" in both_cores.why
    # RAM for 10 worker processes: 9 of them host 4 envs each
    little_ram = Machine(cores=64, ram_available_gib=10 * WORKER_RAM_GIB / 0.8, cuda=False, gpu_free_gib=None,
                         gpu_physics=False)
    tight = recommend_num_envs(little_ram, None)
    assert (tight.num_envs, tight.processes) == (9 * MAX_ENVS_PER_PROCESS, 9) and "RAM" in tight.why
    assert tight.flags() == "--num-envs 36 --env-processes 9"
    # without GPU rendering, the GPU holds the model: its weights and one lane's batch (two lanes of 6 rows)
    weights, per_row = PI_GPU_GIB["pi05"]
    small_gpu = Machine(cores=64, ram_available_gib=512, cuda=True, gpu_physics=False,
                        gpu_free_gib=(weights + 6 * per_row) / 0.9 + 1e-6)
    small = recommend_num_envs(small_gpu, "pi05")
    assert (small.num_envs, small.processes) == (12, None) and "GPU memory" in small.why  # 12 processes, the default
    # renderers on the GPU hold ~0.9 GiB per worker process (the H100: 14.3 GiB for 16 processes, section 0d)
    h100_16 = Machine(cores=16, ram_available_gib=120, cuda=True, gpu_physics=False, gpu_free_gib=78.7,
                      gpu_renders=True)
    assert recommend_num_envs(h100_16, "pi05").flags() == "--num-envs 32"  # what the suite runs measured
    gpu_24 = Machine(cores=16, ram_available_gib=120, cuda=True, gpu_physics=False, gpu_free_gib=24.0,
                     gpu_renders=True)
    fit = recommend_num_envs(gpu_24, "pi05")
    used = weights + per_row * fit.num_envs / 2 + fit.processes * PROCESS_GPU_GIB + (
        fit.num_envs - fit.processes) * ENV_GPU_GIB
    assert fit.num_envs == 32 and fit.processes < 16 and used <= 24.0 * 0.9 and "GPU memory" in fit.why
    assert used + PROCESS_GPU_GIB > 24.0 * 0.9  # one more process would not fit


def test_doctor_says_what_bench_measured_on_this_gpu_or_on_the_ones_it_knows():
    def detail(gpu_name):
        machine = Machine(cores=16, ram_available_gib=128, cuda=gpu_name is not None, gpu_free_gib=None,
                          gpu_physics=False, gpu_name=gpu_name)
        return measured_speed_check(machine).detail

    h100, = MEASURED_GPUS
    assert detail(h100).startswith(f"on this GPU ({h100}): {MEASURED_GPUS[h100]}")
    other = detail("NVIDIA L4")
    assert other.startswith("never on NVIDIA L4") and MEASURED_GPUS[h100] in other and "env_throughput.py" in other
    assert detail(None).startswith(f"no GPU: {MEASURED_CPU}")
