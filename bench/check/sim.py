"""The simulator side of `bench check`: each task's env as `bench run` builds it (one CPU-physics env, the task
spec's robot, cameras and image size), its controller's bounds, and its first observation held against a
dataset's first frame (sim vs dataset) or sent to a policy server (remote presets).

Thresholds (sim vs dataset, per camera, after the preset's pipeline): the same seed on the same renderer gives
identical pixels (measured: PSNR inf, state difference 0), another seed's scene 17-21 dB and swapped cameras 14 dB
(PushCube, lavapipe). Renders of lavapipe and an NVIDIA GPU differ at edges and in shading, so "ok" needs
PSNR_SAME dB when the dataset's renderer is this machine's and its images are lossless (PNG), PSNR_OTHER dB across
renderers or for MP4 datasets (bench record's H.264, crf 18, yuv420p: measured 32.5-33.3 dB against the exact
render); below PSNR_FAIL it is another scene, camera, resolution or shader. The max pixel difference is reported, not graded (one edge pixel
differs by ~100 across renderers). The state must agree within STATE_TOLERANCE (float32 storage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.check.findings import FAIL, OK, WARN, Finding, fail, graded, ok, warn
from bench.envs.maniskill import flatten_obs, make_maniskill_env
from bench.policies import EpisodeContext
from bench.policies import pi_transforms as transforms
from bench.tasks import Episode, TaskSpec

PSNR_SAME, PSNR_OTHER, PSNR_FAIL = 40.0, 30.0, 25.0  # dB
STATE_TOLERANCE = 1e-4
PROBE_SEED = 0  # the observation a remote server is asked about


@dataclass
class TaskEnv:
    """One env of a task, open while the checks use it."""

    task: TaskSpec
    env: object
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def open(cls, task: TaskSpec) -> "TaskEnv":
        env = make_maniskill_env(task, num_envs=1, sim_backend="physx_cpu")
        space = env.action_space
        return cls(task, env, np.asarray(space.low, np.float32).reshape(-1), np.asarray(space.high, np.float32).reshape(-1))

    def first_obs(self, seed: int) -> dict[str, np.ndarray]:
        obs, _ = self.env.reset(seed=int(seed))
        return flatten_obs(obs)

    def close(self) -> None:
        self.env.close()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def image_threshold(same_renderer: bool, lossy: bool) -> float:
    return PSNR_SAME if same_renderer and not lossy else PSNR_OTHER


def image_verdict(value: float, threshold: float) -> str:
    return OK if value >= threshold else FAIL if value < PSNR_FAIL else WARN


def pipeline_view(obs: dict[str, np.ndarray], cameras: dict[str, str | None], layout: str) -> transforms.Frame:
    """The preset's first input steps (cameras, resize_with_pad, state layout) on an env observation."""
    return transforms.Pipeline(transforms.observation_steps(cameras, layout))(transforms.Frame(obs, [""]))


def compare_first_frame(label: str, view: transforms.Frame, images: dict[str, np.ndarray], state: np.ndarray,
                        same_renderer: bool, lossy: bool, recorded: str, here: str) -> Finding:
    """The sim's first observation through the preset's pipeline against a dataset's first frame: PSNR and max
    pixel difference per Pi image key, state max abs difference."""
    check = f"sim vs dataset [{label}]"
    threshold = image_threshold(same_renderer, lossy)
    data, verdicts, parts = {"renderer_dataset": recorded, "renderer_here": here, "video": lossy}, [], []
    for key, image in images.items():
        sim = view.images[key][0]
        if sim.shape != image.shape:
            return fail(check, f"{key}: sim {sim.shape} vs dataset {image.shape}", "record and evaluate at the "
                        "same image size")
        value = psnr(sim, image)
        data[key] = {"psnr_db": value, "max_pixel_diff": int(np.abs(sim.astype(int) - image).max())}
        verdicts.append(image_verdict(value, threshold))
        parts.append(f"{key} {value:.1f} dB (max diff {data[key]['max_pixel_diff']})")
    sim_state = view.state[0]
    if sim_state.shape != state.shape:
        return fail(check, f"state: sim {sim_state.shape[0]} dims vs dataset {state.shape[0]}", "set state_layout "
                    "to the dataset's")
    state_diff = float(np.abs(sim_state - state).max())
    data["state_max_abs_diff"] = state_diff
    verdicts.append(OK if state_diff <= STATE_TOLERANCE else FAIL)
    parts.append(f"state max diff {state_diff:.2g}")
    verdict = FAIL if FAIL in verdicts else WARN if WARN in verdicts else OK
    where = (f"same renderer, {recorded.split(';')[0]}" if same_renderer else
             f"dataset rendered by {recorded.split(';')[0]}, here {here.split(';')[0]}")
    storage = "MP4" if lossy else "lossless"
    return graded(check, verdict, f"{', '.join(parts)}; ok >= {threshold:g} dB, FAIL < {PSNR_FAIL:g} ({where}; "
                  f"{storage} images)",
                  "the simulator does not reproduce the recorded scene: check the preset's cameras and "
                  "state_layout, the task's image_size and robot, and the dataset's renderer", **data)


def remote_findings(policy, task_env: TaskEnv) -> list[Finding]:
    """One real observation to a remote policy: its actions against the controller's dimension and bounds."""
    check = f"server actions [{task_env.task.id}]"
    task = task_env.task
    obs = task_env.first_obs(PROBE_SEED)
    policy.reset(0, EpisodeContext(task, Episode(task.id, 0, PROBE_SEED), task_env.low, task_env.high))
    chunk = np.asarray(policy.act(obs, np.array([0])))[0]
    low, high = task_env.low, task_env.high
    if chunk.ndim != 2 or chunk.shape[1] != len(low):
        return [fail(check, f"the server sent actions of shape {chunk.shape}, {task.control_mode} takes {len(low)} "
                     "dims", "serve a policy trained for this controller, or use a task with its control mode")]
    outside = np.flatnonzero(((chunk < low) | (chunk > high)).any(0))
    if len(outside):
        return [warn(check, f"actions outside [{low.min():g}, {high.max():g}] in dims {outside.tolist()} (range "
                     f"{chunk.min():.3g}..{chunk.max():.3g}): the controller clips them", "check that the server's "
                     "policy was trained on this controller's action scale (and gripper sign)",
                     min=chunk.min(0).tolist(), max=chunk.max(0).tolist())]
    return [ok(check, f"chunk {chunk.shape[0]}x{chunk.shape[1]} within [{low.min():g}, {high.max():g}]")]
