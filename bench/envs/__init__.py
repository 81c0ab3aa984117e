"""Environments: N ManiSkill episodes stepped in lockstep, on GPU physics or on CPU worker processes.

Both backends expose the same `BatchedEnvs` interface. A batch is reset together (no partial resets), so a
wave of up to N episodes starts together and runs the task's whole step budget. Observations come back as
flat dicts of numpy arrays ("sensor_data/base_camera/rgb" -> [k, H, W, 3]) with one row per active episode.

One module per concept; imports point down this list only:
- `base`: the `BatchedEnvs` interface, `StepOutput` and the observation types;
- `maniskill`: a task spec turned into a ManiSkill env, flat observations, the missing-Vulkan message;
- `cpu_workers`: `CpuWorkerEnvs`, CPU-physics envs in worker processes, several per process (restarts, timeouts);
- `gpu`: `GpuEnvs`, N sub-scenes on GPU physics, and the check that GPU physics can start;
- `choose`: the physics plan (GPU or CPU per task), opening a backend, and the default number of env slots.
"""

from bench.envs.base import ActionBounds, BatchedEnvs, Obs, StepOutput
from bench.envs.choose import PhysicsPlan, default_num_envs, open_physics, plan_physics, summary
from bench.envs.cpu_workers import CpuWorkerEnvs
from bench.envs.gpu import GpuEnvs, gpu_physics_status, physx_gpu_library
from bench.envs.maniskill import (NO_VULKAN_FIX, NO_VULKAN_MESSAGES, OBS_MODE, flatten_obs, is_camera_key,
                                  make_maniskill_env)

__all__ = ["NO_VULKAN_FIX", "NO_VULKAN_MESSAGES", "OBS_MODE", "ActionBounds", "BatchedEnvs", "CpuWorkerEnvs",
           "GpuEnvs", "Obs", "PhysicsPlan", "StepOutput", "default_num_envs", "flatten_obs", "gpu_physics_status",
           "is_camera_key", "make_maniskill_env", "open_physics", "physx_gpu_library", "plan_physics", "summary"]
