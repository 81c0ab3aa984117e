"""What the policy's cameras see."""

from dataclasses import replace

import numpy as np

from bench.envs import flatten_obs, make_maniskill_env
from bench.tasks import load_suite


def green_pixels(spec, reconfigure: bool = False) -> int:
    env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")
    try:
        obs, _ = env.reset(seed=0, options={"reconfigure": reconfigure})
        image = np.asarray(flatten_obs(obs)["sensor_data/base_camera/rgb"][0]).astype(int)
    finally:
        env.close()
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return int(((g > 150) & (r < 100) & (b < 100)).sum())  # PickCube's goal_site is a pure green sphere


def test_show_hidden_makes_the_pickcube_goal_visible_to_the_cameras():
    spec = load_suite().tasks["PickCube-v1"]
    assert spec.show_hidden == ("goal_site",)
    shown, hidden = green_pixels(spec), green_pixels(replace(spec, show_hidden=()))
    assert shown > 20 and hidden < 5, (shown, hidden)


def camera_images(spec, steps: int = 8) -> dict[str, np.ndarray]:
    """Both policy cameras after `steps` steps that move the wrist (and its camera mount) into the base camera's
    view."""
    env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(steps):
            obs, *_ = env.step(np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], np.float32))
        flat = flatten_obs(obs)
    finally:
        env.close()
    return {camera: flat[f"sensor_data/{camera}/rgb"][0].astype(int) for camera in spec.cameras}


def test_the_d415_housing_is_drawn_by_no_camera_and_changes_a_few_base_camera_pixels():
    """The suite hides the wrist camera's D415 mesh (issue 14: most of every render's cost). The hand camera never
    saw it; the base camera loses it, a sliver of its pixels."""
    spec = load_suite().tasks["PickCube-v1"]
    assert spec.hidden_links == ("camera_link",)
    hidden, drawn = camera_images(spec), camera_images(replace(spec, hidden_links=()))
    np.testing.assert_array_equal(hidden["hand_camera"], drawn["hand_camera"])
    changed = (np.abs(hidden["base_camera"] - drawn["base_camera"]).max(-1) > 0).mean()
    assert 0 < changed < 0.005, changed


def drawn_visibilities(env, link: str) -> list[float]:
    """Render visibility of each visual body of the robot's `link`, in the scene the cameras draw now."""
    import sapien

    bodies = [obj.entity.find_component_by_type(sapien.render.RenderBodyComponent)
              for obj in env.unwrapped.agent.robot.links_map[link]._objs]
    return [body.visibility for body in bodies if body is not None]


def test_the_scene_edits_hold_in_every_scene_a_reset_rebuilds():
    """A reset that reconfigures builds the whole scene anew: PegInsertionSide with one env does so at every reset
    (new peg and hole sizes). The D415 must stay hidden there (it was drawn from the first rebuild on, suite .4),
    and a shown object must stay visible (PickCube's goal, through a reset asked to reconfigure)."""
    env = make_maniskill_env(load_suite().tasks["PegInsertionSide-v1"], num_envs=1, sim_backend="physx_cpu")
    try:
        for seed in (0, 1):
            before = env.unwrapped.scene
            env.reset(seed=seed)
            assert env.unwrapped.scene is not before  # rebuilt
            assert drawn_visibilities(env, "camera_link") == [0.0]
    finally:
        env.close()
    assert green_pixels(load_suite().tasks["PickCube-v1"], reconfigure=True) > 20
