"""Robustness variants in the simulator (`bench.variants` declares them):
- scene (camera, lighting, appearance): a subclass of the task's ManiSkill env, registered once per task and
  process, that builds the perturbed scene; the perturbation is a constructor argument, so every variant of a
  task shares it;
- sensor: a gymnasium wrapper that perturbs every rendered camera image, with noise drawn from the sensor stream of
  the slot's episode seed and step;
- initial state: ManiSkill's own `robot_init_qpos_noise` argument (bench.envs.maniskill passes it on).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from bench.variants import Perturbation, perturb_image

PERTURBED_CAMERA = "base_camera"  # the wrist camera moves with the hand: a camera perturbation moves the base camera


class PerturbedScene:
    """Mixed in before a task's env class: its base camera moved and turned, its lights scaled and tinted, its table
    and floor recoloured."""

    def __init__(self, *args, perturbation: Perturbation, **kwargs):
        self._perturbation = perturbation
        super().__init__(*args, **kwargs)

    @property
    def _default_sensor_configs(self):
        from mani_skill.utils.structs.pose import Pose
        from transforms3d.euler import euler2quat

        configs = super()._default_sensor_configs
        p = self._perturbation
        for config in configs if isinstance(configs, (list, tuple)) else [configs]:
            if config.uid != PERTURBED_CAMERA:
                continue
            pose = config.pose if isinstance(config.pose, Pose) else Pose.create(config.pose)
            moved = Pose.create_from_pq(p=pose.p + pose.p.new_tensor(p.camera_shift), q=pose.q)
            pitch, yaw = np.deg2rad(p.camera_turn)
            config.pose = moved * Pose.create_from_pq(q=euler2quat(0.0, pitch, yaw))
            config.fov = config.fov * p.camera_fov_scale
        return configs

    def _load_lighting(self, options: dict):
        """The task's own lighting, then every light's colour multiplied by `light_scale` x `light_color`."""
        import sapien

        super()._load_lighting(options)
        p = self._perturbation
        gain = p.light_scale * np.asarray(p.light_color, np.float32)
        for scene in self.scene.sub_scenes:
            scene.ambient_light = np.asarray(scene.ambient_light, np.float32) * gain
            for entity in scene.entities:
                for light in entity.components:
                    if isinstance(light, sapien.render.RenderLightComponent):
                        light.color = np.asarray(light.color, np.float32) * gain

    def _load_scene(self, options: dict):
        """The task's own scene, then the table top's and the floor's colour textures replaced by the variant's
        colours (every task here builds them with ManiSkill's TableSceneBuilder)."""
        super()._load_scene(options)
        p = self._perturbation
        for actor, color in ((self.table_scene.table, p.table_color), (self.table_scene.ground, p.floor_color)):
            if color is not None:
                _recolor(actor, color)


def _recolor(actor, rgb) -> None:
    import sapien

    for entity in actor._objs:
        body = entity.find_component_by_type(sapien.render.RenderBodyComponent)
        for shape in body.render_shapes if body is not None else []:
            for part in shape.parts if hasattr(shape, "parts") else [shape]:
                part.material.base_color_texture = None
                part.material.base_color = [*rgb, 1.0]


def scene_env_id(task_id: str) -> str:
    """The gym id of the task's perturbed-scene subclass, registered on first use in this process."""
    from mani_skill.utils.registration import REGISTERED_ENVS, register_env

    env_id = f"bench-perturbed-{task_id}"
    if env_id not in REGISTERED_ENVS:
        spec = REGISTERED_ENVS[task_id]
        cls = type(f"Perturbed{spec.cls.__name__}", (PerturbedScene, spec.cls), {})
        register_env(env_id, max_episode_steps=spec.max_episode_steps)(cls)
    return env_id


class PerturbedSensors(gym.Wrapper):
    """Every camera image of the observation as the perturbed sensor delivers it. The noise of sub-env i at step t
    comes from the sensor stream of (its episode seed, t, camera); steps without cameras (bench.envs.maniskill.
    cameras) count, so a slot observed every 5th step sees what it would see if observed every step."""

    def __init__(self, env, perturbation: Perturbation):
        super().__init__(env)
        self._perturbation = perturbation
        self._seeds: list[int] = []
        self._step = 0

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        count = self.env.unwrapped.num_envs
        self._seeds = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else [int(seed or 0)] * count
        self._step = 0
        return self._perturbed(obs), info

    def step(self, action):
        obs, *rest = self.env.step(action)
        self._step += 1
        return (self._perturbed(obs), *rest)

    def _perturbed(self, obs: dict) -> dict:
        import torch

        sensors = obs.get("sensor_data") if isinstance(obs, dict) else None
        if not sensors:
            return obs
        for index, (name, data) in enumerate(sorted(sensors.items())):
            if "rgb" not in data:
                continue
            images = data["rgb"].cpu().numpy()
            changed = np.stack([perturb_image(image, self._perturbation, seed, self._step, index)
                                for image, seed in zip(images, self._seeds)])
            data["rgb"] = torch.from_numpy(changed).to(data["rgb"].device)
        return obs
