"""Robustness variants (tasks/robustness.toml, bench.variants, bench.envs.perturb) on real ManiSkill scenes (CPU
physics, lavapipe): pinned, twinned with their nominal episodes, and kept apart in the contract."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench import contract
from bench.envs.maniskill import flatten_obs, make_maniskill_env
from bench.errors import BenchError
from bench.results import read_episodes
from bench.robustness import robustness_table
from bench.runs import load_run
from bench.tasks import episodes_for, load_suite, result_view
from bench.variants import instruction_for

SEED = 7
STATE_KEYS = ("agent/qpos", "agent/qvel", "extra/tcp_pose", "extra/goal_pos", "extra/obj_pose")


@pytest.fixture(scope="module")
def suite():
    return load_suite()


def first_obs(spec, seed: int = SEED) -> dict:
    env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")
    try:
        return flatten_obs(env.reset(seed=seed)[0])
    finally:
        env.close()


@pytest.fixture(scope="module")
def nominal(suite):
    return first_obs(suite.tasks["PushCube-v1"])


@pytest.mark.parametrize("variant, changes", [
    ("camera-small", {"base"}), ("light-dim", {"base", "hand"}), ("light-side", {"base", "hand"}),
    ("table-floor-dark", {"base", "hand"}), ("table-checker", {"base", "hand"}),
    ("objects-orange", {"base", "hand"}), ("distractors", {"base"}), ("sensor-noise", {"base", "hand"}),
    ("sensor-blur-jpeg", {"base", "hand"}), ("language", set())])
def test_a_variant_starts_from_its_nominal_twins_state_and_changes_only_its_axis(variant, changes, suite, nominal):
    obs = first_obs(suite.tasks[f"PushCube-v1@{variant}"])
    for key in STATE_KEYS:
        if key in nominal:
            np.testing.assert_array_equal(obs[key], nominal[key], err_msg=key)
    for camera in ("base", "hand"):
        key = f"sensor_data/{camera}_camera/rgb"
        changed = (np.abs(obs[key].astype(int) - nominal[key]).max(-1) > 10).mean()  # share of pixels
        assert (changed > 0.001) == (camera in changes), (camera, changed)


def test_the_initial_state_axis_changes_the_start_by_design(suite, nominal):
    obs = first_obs(suite.tasks["PushCube-v1@joint-noise"])
    assert np.abs(obs["agent/qpos"] - nominal["agent/qpos"]).max() > 0.02
    np.testing.assert_array_equal(obs["extra/goal_pos"], nominal["extra/goal_pos"])  # the task's own draws stay


def test_spawn_wide_moves_the_tasks_own_layout_as_a_whole(suite, nominal):
    """The task's own draw, scaled about its spawn region's centre (PushCube's: the origin): the cube 1.5x as far out,
    the goal moved with it, the robot where it was."""
    obs = first_obs(suite.tasks["PushCube-v1@spawn-wide"])
    np.testing.assert_array_equal(obs["agent/qpos"], nominal["agent/qpos"])
    cube, twin = obs["extra/obj_pose"][0], nominal["extra/obj_pose"][0]
    np.testing.assert_allclose(cube[:2], 1.5 * twin[:2], atol=1e-5)
    np.testing.assert_allclose(cube[2:], twin[2:], atol=1e-5)
    np.testing.assert_allclose(obs["extra/goal_pos"][0] - cube[:3], nominal["extra/goal_pos"][0] - twin[:3], atol=1e-5)


def test_every_spawn_layout_names_actors_of_its_task(suite):
    """[layouts] names attributes of each task's ManiSkill env: a wrong one would fail mid-run. Each task's layout
    starts moved from its twin's, and together (the first two actors keep their offset)."""
    wide = [t for t in suite.tasks.values() if t.perturbation.spawn_scale != 1.0]
    assert {t.base_id for t in wide} == set(suite.suites["all"])
    for spec in wide:
        positions = []
        for task in (suite.tasks[spec.base_id], spec):
            env = make_maniskill_env(task, num_envs=1, sim_backend="physx_cpu")
            try:
                env.reset(seed=SEED)
                positions.append([getattr(env.unwrapped, name).pose.p[0].cpu().numpy()
                                  for name in spec.perturbation.layout_actors])
            finally:
                env.close()
        (first, second), (moved_first, moved_second) = positions
        assert np.abs(moved_first - first).max() > 1e-3, spec.id
        np.testing.assert_allclose(moved_second - moved_first, second - first, atol=1e-5, err_msg=spec.id)


def test_distractors_are_put_back_at_every_episode_start(suite):
    """A distractor the last episode pushed away starts the next one in its declared place, at rest."""
    import sapien

    spec = suite.tasks["PushCube-v1@distractors"]
    env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")
    try:
        env.reset(seed=SEED)
        declared = spec.perturbation.distractors[0]
        actor = env.unwrapped.scene.actors["bench_distractor_0"]
        np.testing.assert_allclose(actor.pose.p[0, :2].cpu().numpy(), declared.xy, atol=1e-5)
        actor.set_pose(sapien.Pose(p=[0.0, -0.5, 0.3]))
        actor.set_linear_velocity(np.array([0.5, 0.0, 0.0], np.float32))
        env.reset(seed=SEED + 1)
        np.testing.assert_allclose(actor.pose.p[0].cpu().numpy(), [*declared.xy, declared.size], atol=1e-5)
        assert float(np.abs(actor.linear_velocity[0].cpu().numpy()).max()) == 0.0
    finally:
        env.close()


@pytest.mark.parametrize("variant", ["sensor-noise", "camera-large"])
def test_variants_are_pinned(variant, suite):
    """Same seed, same perturbed first frame (the sensor noise comes from the episode's own stream); another seed,
    another noise."""
    spec = suite.tasks[f"PushCube-v1@{variant}"]
    a, b = first_obs(spec), first_obs(spec)
    for key in ("sensor_data/base_camera/rgb", "sensor_data/hand_camera/rgb"):
        np.testing.assert_array_equal(a[key], b[key])
    if variant == "sensor-noise":
        other = first_obs(spec, SEED + 1)
        twin = first_obs(suite.tasks["PushCube-v1"], SEED + 1)
        noise_a = a["sensor_data/hand_camera/rgb"].astype(int) - first_obs(suite.tasks["PushCube-v1"])[
            "sensor_data/hand_camera/rgb"]
        noise_b = other["sensor_data/hand_camera/rgb"].astype(int) - twin["sensor_data/hand_camera/rgb"]
        assert not np.array_equal(noise_a, noise_b)


def test_variant_episodes_are_their_base_tasks(suite):
    assert episodes_for("PickCube-v1@light-dim", 0, 5) != episodes_for("PickCube-v1", 0, 5)  # the task id differs
    assert [e.seed for e in episodes_for("PickCube-v1@light-dim", 0, 5)] == \
        [e.seed for e in episodes_for("PickCube-v1", 0, 5)]


def test_language_variant_draws_a_paraphrase_per_episode(suite):
    spec = suite.tasks["PickCube-v1@language"]
    said = [instruction_for(spec, e.seed) for e in episodes_for(spec.id, 0, 12)]
    assert set(said) <= set(spec.perturbation.instructions) and len(set(said)) > 1
    assert said == [instruction_for(spec, e.seed) for e in episodes_for(spec.id, 0, 12)]
    assert instruction_for(suite.tasks["PickCube-v1"], 3) == suite.tasks["PickCube-v1"].instruction


def test_contracts_keep_variants_and_their_versions_apart(suite):
    nominal, variant = suite.tasks["PushCube-v1"], suite.tasks["PushCube-v1@light-dim"]
    assert "perturbation" not in result_view(nominal)  # nominal contracts are what they were before variants
    bumped = replace(variant, perturbation=replace(variant.perturbation, version=2))
    a, b = (contract.flat(result_view(t)) for t in (variant, bumped))
    assert [k for k in a if a[k] != b[k]] == ["perturbation.version"]


def test_every_initial_state_variant_is_an_argument_its_task_takes(suite):
    """ManiSkill's tasks take `robot_init_qpos_noise` in their own constructors, and not all of them do
    (PegInsertionSide-v1 does not): a variant that passes it to one that does not would fail mid-run."""
    import inspect

    import mani_skill.envs  # noqa: F401  (registers the tasks)
    from mani_skill.utils.registration import REGISTERED_ENVS

    noisy = [t for t in suite.tasks.values() if t.perturbation.robot_init_qpos_noise is not None]
    assert noisy
    for spec in noisy:
        assert "robot_init_qpos_noise" in inspect.signature(REGISTERED_ENVS[spec.base_id].cls.__init__).parameters, \
            spec.id


def test_robustness_toml_errors_name_the_fix(tmp_path):
    import shutil

    from bench.tasks import DEFAULT_TASKS_DIR

    tasks = tmp_path / "tasks"
    shutil.copytree(DEFAULT_TASKS_DIR, tasks)
    path = tasks / "robustness.toml"
    text = path.read_text()
    broken = [  # (text replaced, replacement, the one-line error expected)
        ('axis = "lighting"\nversion = 1\nlight_scale = 0.4',
         'axis = "lighting"\nversion = 1\nlight_scale = 0.4\nlight_gain = 2', "light-dim.*unknown keys.*light_gain"),
        ('axis = "sensor"\nversion = 1\nimage_noise_std', 'axis = "sensor"\nimage_noise_std',
         "sensor-noise.*version must be a positive integer"),
        ('xy = [0.3, -0.36]', 'xy = 0.3', r"distractors\[0\]: xy takes 2 numbers"),
        ('shape = "sphere"', 'shape = "cone"', r"distractors.*distractors\[1\]: shape must be one of box, sphere"),
        ('"PullCube-v1" = ["obj"]\n', '', r"objects-orange.*\[recolorable\] names none for PullCube-v1"),
        ('"PushCube-v1" = {actors = ["obj", "goal_region"], center = [0.0, 0.0]}\n', '',
         r"spawn-wide.*\[layouts\] has no .* for PushCube-v1: add one"),
    ]
    for old, replacement, error in broken:
        path.write_text(text.replace(old, replacement))
        with pytest.raises(BenchError, match=error):
            load_suite(tasks)


def test_robustness_smoke_runs_end_to_end(short_tasks, bench, tmp_path):
    """`bench run --suite robustness-smoke`: every variant runs, each episode records its variant's task id, and
    the expert (which reads the simulator state) solves the variants that leave the physics alone."""
    code, out = bench("run", "--policy", "expert", "--suite", "robustness-smoke", "--episodes", "2",
                      "--tasks-dir", str(short_tasks), "--num-envs", "2", "--output", str(tmp_path), "--run-id", "r")
    assert code == 0, out
    episodes = read_episodes(tmp_path / "r")
    assert sorted(set(episodes["task"])) == sorted(load_suite(short_tasks).suites["robustness-smoke"])
    assert (episodes["status"] == "ok").all()
    seeds = episodes.groupby("task")["seed"].apply(tuple)
    assert len(set(seeds)) == 1  # every variant ran its nominal twins' episodes
    physical = episodes[~episodes["task"].str.endswith("@joint-noise")]
    assert physical["success_once"].all(), physical[["task", "episode", "success_once"]]

    table = robustness_table(load_run(tmp_path / "r"))  # each variant against its nominal twins
    assert list(table["task"]) == [t for t in load_suite(short_tasks).suites["robustness-smoke"] if "@" in t]
    assert (table["episodes"] == 2).all() and set(table["axis"]) == {"camera", "lighting", "appearance",
                                                                      "distractors", "sensor", "language",
                                                                      "initial_state"}
    code, out = bench("report", str(tmp_path))
    assert code == 0 and "robustness: r" in out, out
    page = (tmp_path / "report.html").read_text()
    assert "PushCube-v1@light-dim" in page and "per-axis chart" in page


def test_compare_pairs_a_variant_run_with_its_nominal_run_and_refuses_another_version(short_tasks, bench, tmp_path):
    """`bench compare NOMINAL VARIANT`: the variant's episodes against their nominal twins; two runs of one variant
    at different versions are not evaluated the same way and are refused (exit 2, the key named)."""
    import json
    import shutil

    bumped = tmp_path / "tasks-v2"
    shutil.copytree(short_tasks, bumped)
    text = (bumped / "robustness.toml").read_text()
    (bumped / "robustness.toml").write_text(text.replace('axis = "lighting"\nversion = 1\nlight_scale = 0.4',
                                                         'axis = "lighting"\nversion = 2\nlight_scale = 0.4'))
    for run_id, tasks, folder in (("nominal", "PushCube-v1", short_tasks), ("dim", "PushCube-v1@light-dim", short_tasks),
                                  ("dim-v2", "PushCube-v1@light-dim", bumped)):
        code, out = bench("run", "--policy", "zero", "--tasks", tasks, "--episodes", "2", "--tasks-dir", str(folder),
                          "--num-envs", "2", "--output", str(tmp_path / "runs"), "--run-id", run_id)
        assert code == 0, out
    runs = tmp_path / "runs"
    code, out = bench("compare", str(runs / "nominal"), str(runs / "dim"), "--json", str(tmp_path / "c.json"))
    assert code == 0, out
    (row,) = json.loads((tmp_path / "c.json").read_text())["tasks"]
    assert row["task"] == "PushCube-v1@light-dim" and row["episodes"] == 2
    code, out = bench("compare", str(runs / "dim"), str(runs / "dim-v2"))
    assert code == 2 and "perturbation.version: 1 != 2" in out, out


def test_bench_tasks_lists_the_robustness_suites_and_variants(bench):
    code, out = bench("tasks")
    assert code == 0
    assert "robustness-smoke:" in out and "robustness variants" in out
    assert "joint-noise" in out and "initial_state" in out
