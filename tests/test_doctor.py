"""`bench doctor` on this machine (real probes) and its --num-envs arithmetic."""

import torch

from bench.doctor import (MEASURED_CPU, MEASURED_GPUS, PI_GPU_GIB, WORKER_GPU_GIB, WORKER_RAM_GIB, WORKERS_PER_CORE,
                          Machine, Vulkan, measured_speed_check, probe_vulkan, recommend_num_envs)


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
    cpu_only = Machine(cores=2, ram_available_gib=64, cuda=False, gpu_free_gib=None, gpu_physics=False)
    assert recommend_num_envs(cpu_only, "pi05")[0] == WORKERS_PER_CORE * 2
    little_ram = Machine(cores=64, ram_available_gib=10 * WORKER_RAM_GIB / 0.8, cuda=False, gpu_free_gib=None,
                         gpu_physics=False)
    assert recommend_num_envs(little_ram, None)[0] == 10
    weights, per_row = PI_GPU_GIB["pi05"]
    small_gpu = Machine(cores=64, ram_available_gib=512, cuda=True, gpu_physics=False,
                        gpu_free_gib=(weights + 6 * per_row) / 0.9 + 1e-6)
    count, why = recommend_num_envs(small_gpu, "pi05")
    assert count == 12 and why.endswith("GPU memory")  # two lanes of 6 rows
    # workers whose renderers draw on the GPU hold its memory too: the H100's 64-slot run used 71.8 GiB, 128 failed
    h100 = Machine(cores=64, ram_available_gib=512, cuda=True, gpu_physics=False, gpu_free_gib=78.7, gpu_renders=True)
    count, why = recommend_num_envs(h100, "pi05")
    assert 48 <= count < 64 and why.endswith("GPU memory")
    assert recommend_num_envs(h100, None)[0] == int(78.7 * 0.9 / WORKER_GPU_GIB)  # a policy without a model: renderers


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
