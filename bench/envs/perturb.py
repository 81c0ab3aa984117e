"""Robustness variants in the simulator (`bench.variants` declares them):
- scene (camera, lighting, appearance, distractors, spawn ranges): a subclass of the task's ManiSkill env,
  registered once per task and process, that builds the perturbed scene and initialises its episodes; the
  perturbation is a constructor argument, so every variant of a task shares it;
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
    """Mixed in before a task's env class: its base camera moved and turned, its lights scaled, tinted and turned, its
    table, floor and objects recoloured or the table checkered, distractors on the table, its layout spawned wider."""

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
        """The task's own lighting, then every light's colour multiplied by `light_scale` x `light_color`, and the
        key light (each sub-scene's first directional light) turned to `light_direction`."""
        import sapien

        super()._load_lighting(options)
        p = self._perturbation
        gain = p.light_scale * np.asarray(p.light_color, np.float32)
        for scene in self.scene.sub_scenes:
            scene.ambient_light = np.asarray(scene.ambient_light, np.float32) * gain
            lights = [c for entity in scene.entities for c in entity.components
                      if isinstance(c, sapien.render.RenderLightComponent)]
            for light in lights:
                light.color = np.asarray(light.color, np.float32) * gain
            key = [c for c in lights if isinstance(c, sapien.render.RenderDirectionalLightComponent)][:1]
            if p.light_direction is not None and key:
                key[0].pose = sapien.Pose(key[0].pose.p, sapien.math.shortest_rotation([1, 0, 0], p.light_direction))

    def _load_scene(self, options: dict):
        """The task's own scene, then the table top's, the floor's and the recolourable objects' colour textures
        replaced by the variant's colours or the table's by a checkerboard (every task here builds its table and
        floor with ManiSkill's TableSceneBuilder), then the distractors."""
        import sapien
        from mani_skill.utils.building import actors

        super()._load_scene(options)
        p = self._perturbation
        for actor, color in ((self.table_scene.table, p.table_color), (self.table_scene.ground, p.floor_color),
                             *((getattr(self, name), p.object_color) for name in p.recolor_actors)):
            if color is not None:
                _recolor(actor, color)
        if p.table_checker:
            _retexture(self.table_scene.table, checkerboard(p.table_checker, p.table_checker_colors))
        self._distractors = []
        for index, d in enumerate(p.distractors):
            build, size = (actors.build_cube, "half_size") if d.shape == "box" else (actors.build_sphere, "radius")
            self._distractors.append(build(self.scene, **{size: d.size}, color=[*d.color, 1.0],
                                           name=f"bench_distractor_{index}",
                                           initial_pose=sapien.Pose(p=[*d.xy, d.size])))

    def _initialize_episode(self, env_idx, options: dict):
        """The task's own episode start (its random draws unchanged), then the layout moved for a wider spawn range
        and the distractors put back in their places, at rest (the last episode may have pushed them)."""
        import torch
        from mani_skill.utils.structs.pose import Pose

        super()._initialize_episode(env_idx, options)
        p = self._perturbation
        if p.spawn_scale != 1.0:
            layout = [getattr(self, name) for name in p.layout_actors]
            first = layout[0].pose.p[env_idx, :2]
            shift = (p.spawn_scale - 1.0) * (first - first.new_tensor(p.spawn_center))
            for actor in layout:
                pose = actor.pose
                position = pose.p[env_idx].clone()
                position[:, :2] += shift
                actor.set_pose(Pose.create_from_pq(p=position, q=pose.q[env_idx]))
        for actor, d in zip(self._distractors, p.distractors):
            still = torch.zeros((len(env_idx), 3), device=self.device)
            actor.set_pose(Pose.create_from_pq(p=still + still.new_tensor([*d.xy, d.size])))
            actor.set_linear_velocity(still)
            actor.set_angular_velocity(still)


def _materials(actor):
    """The render materials of every part of every sub-scene's copy of `actor`."""
    import sapien

    for entity in actor._objs:
        body = entity.find_component_by_type(sapien.render.RenderBodyComponent)
        for shape in body.render_shapes if body is not None else []:
            for part in shape.parts if hasattr(shape, "parts") else [shape]:
                yield part.material


def _recolor(actor, rgb) -> None:
    for material in _materials(actor):
        material.base_color_texture = None
        material.base_color = [*rgb, 1.0]


def checkerboard(cells: int, colors, pixels_per_cell: int = 16) -> np.ndarray:
    """uint8 RGBA [cells * pixels_per_cell]^2 of alternating cells in the two colours."""
    ids = (np.indices((cells, cells)).sum(0) % 2).repeat(pixels_per_cell, 0).repeat(pixels_per_cell, 1)
    rgb = np.round(np.asarray(colors, np.float32)[ids] * 255).astype(np.uint8)
    return np.concatenate([rgb, np.full(ids.shape + (1,), 255, np.uint8)], -1)


def _retexture(actor, image: np.ndarray) -> None:
    import sapien

    texture = sapien.render.RenderTexture2D(image, "R8G8B8A8Unorm", filter_mode="nearest")
    for material in _materials(actor):
        material.base_color_texture = texture
        material.base_color = [1.0, 1.0, 1.0, 1.0]


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
