"""What the policy's cameras see."""

from dataclasses import replace

import numpy as np

from bench.envs import flatten_obs, make_maniskill_env
from bench.tasks import load_suite


def green_pixels(spec) -> int:
    env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")
    try:
        obs, _ = env.reset(seed=0)
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
