"""ManiSkill itself: a task spec turned into a gym env, its observations flattened, its Vulkan errors explained."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from bench.envs.base import Obs
from bench.errors import BenchError
from bench.tasks import TaskSpec

OBS_MODE = "rgb+state_dict"  # camera images plus the simulator state that privileged experts read
NO_VULKAN_FIX = (
    "no Vulkan device for rendering: install Mesa >= 24.3 (lavapipe) with `bash scripts/install-system-deps.sh` "
    "(Debian bookworm-backports), or run on a machine with a GPU driver"
)
# What SAPIEN raises when Vulkan has no usable device: an old Mesa ("failed to find a rendering device") or no driver
# at all (the loader's vk::createInstanceUnique fails). Other rendering errors keep their own message.
NO_VULKAN_MESSAGES = ("failed to find a rendering device", "vk::createInstanceUnique: ErrorIncompatibleDriver",
                      "vk::createInstanceUnique: ErrorInitializationFailed")


def make_maniskill_env(spec: TaskSpec, num_envs: int, sim_backend: str, obs_mode: str = OBS_MODE):
    """Builds the ManiSkill env for a task spec; the one place that turns a spec into gym.make arguments."""
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the tasks)

    from bench.envs.perturb import PerturbedSensors, scene_env_id

    height, width = spec.image_size
    side = height * len(spec.cameras)  # third-person view as tall as the policy's cameras stacked (videos)
    perturbation = spec.perturbation
    variant_kwargs = {}
    if perturbation.scene:
        variant_kwargs["perturbation"] = perturbation
    if perturbation.robot_init_qpos_noise is not None:
        variant_kwargs["robot_init_qpos_noise"] = perturbation.robot_init_qpos_noise
    env = gym.make(
        scene_env_id(spec.base_id) if perturbation.scene else spec.base_id,
        **variant_kwargs,
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
    keep_scene_edits(unwrapped, spec)
    if perturbation.sensor:
        env = PerturbedSensors(env, perturbation)
    if "sensor_data" in obs_mode or "rgb" in obs_mode:
        missing = set(spec.cameras) - set(unwrapped._sensors)
        if missing:
            raise BenchError(f"{spec.id}: cameras {sorted(missing)} not in {sorted(unwrapped._sensors)}; fix `cameras`")
    return env


def keep_scene_edits(unwrapped, spec: TaskSpec) -> None:
    """Applies the spec's edits of what cameras draw (`show_hidden`, `hidden_links`) to the scene ManiSkill built,
    and again to every scene it rebuilds. A reset that reconfigures builds the whole scene anew, as the task
    describes it: PegInsertionSide with one env does so at every reset (it draws new peg and hole sizes), so edits
    made once would hold for its first episode only. ManiSkill's hook for work after a rebuild,
    `_after_reconfigure`, runs before the reset renders its observation; bench wraps it on this instance."""
    apply_scene_edits(unwrapped, spec)
    after_rebuild = unwrapped._after_reconfigure

    def after_reconfigure(options):
        after_rebuild(options)
        apply_scene_edits(unwrapped, spec)

    unwrapped._after_reconfigure = after_reconfigure


def apply_scene_edits(unwrapped, spec: TaskSpec) -> None:
    hidden = {obj.name: obj for obj in unwrapped._hidden_objects}
    for name in spec.show_hidden:
        if name not in hidden:
            raise BenchError(f"{spec.id}: show_hidden names '{name}', but the hidden objects are {sorted(hidden)}")
        unwrapped._hidden_objects.remove(hidden[name])
        hidden[name].show_visual()  # ManiSkill hid it when it built the scene; off the list it is never hidden again
    hide_links(unwrapped, spec)


def hide_links(unwrapped, spec: TaskSpec) -> None:
    """The visuals of the spec's `hidden_links` are not drawn: render visibility 0 in every sub-scene, what ManiSkill
    itself does to hide an object on CPU physics (on GPU physics, untested here: it cannot start on our machines)."""
    import sapien

    links = unwrapped.agent.robot.links_map
    for name in spec.hidden_links:
        if name not in links:
            raise BenchError(f"{spec.id}: hidden_links names '{name}', but {spec.robot}'s links are {sorted(links)}")
        for link in links[name]._objs:
            body = link.entity.find_component_by_type(sapien.render.RenderBodyComponent)
            if body is not None:
                body.visibility = 0.0


CAMERA_KEY_PREFIXES = ("sensor_data/", "sensor_param/")  # what a step without cameras leaves out


def is_camera_key(key: str) -> bool:
    return key.startswith(CAMERA_KEY_PREFIXES)


@contextmanager
def cameras(env, on: bool):
    """With `on` False, `env.step` / `env.reset` inside it return the state part of the observation only and render
    nothing; with `on` True, it changes nothing.

    ManiSkill renders every camera inside each step (its `get_obs`) and has no public switch for a step nobody will
    look at. Its observation mode is what `get_obs` dispatches on, so it reads "state_dict" for the duration: the
    cameras stay as they were built, so the next observed step renders exactly what it would have, and the state
    keys are computed by the same code (tests/test_observe_on_demand.py holds both to that).
    """
    if on:
        yield
        return
    from mani_skill.envs.utils.observations import parse_obs_mode_to_struct

    unwrapped = env.unwrapped
    saved = unwrapped._obs_mode, unwrapped.obs_mode_struct
    unwrapped._obs_mode, unwrapped.obs_mode_struct = "state_dict", parse_obs_mode_to_struct("state_dict")
    try:
        yield
    finally:
        unwrapped._obs_mode, unwrapped.obs_mode_struct = saved


def flatten_obs(obs: dict, prefix: str = "") -> Obs:
    """Nested ManiSkill observation -> {"a/b/c": numpy array with the batch as first axis}."""
    flat: Obs = {}
    for key, value in obs.items():
        if isinstance(value, dict):
            flat.update(flatten_obs(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)
    return flat


def vulkan_error(message: str) -> BenchError | None:
    """The one-line fix for an error message that says Vulkan has no device; None for any other message."""
    return BenchError(NO_VULKAN_FIX) if any(m in message for m in NO_VULKAN_MESSAGES) else None
