"""Episodes are pinned: the same initial state whatever --num-envs, and across runs. Results are identical for a
policy that makes no contact; with contact, PhysX state carried across resets in a worker can move them slightly
across --num-envs (README, "How episodes are run and pinned")."""

import os

import numpy as np
import pytest

from bench.envs import CpuWorkerEnvs
from bench.tasks import episodes_for, load_suite

from conftest import assert_same_results, episodes_without_timing, read_manifest, run_dir_of


@pytest.mark.timeout(600)
def test_initial_observations_identical_for_one_slot_and_two_sharing_a_process():
    """Also after a step whose replies come out of order, and whether the scenes were built by start_task alone,
    begun with begin_task (as a run does while its policy builds), or after another task was begun."""
    suite = load_suite()
    spec = suite.tasks["PickCube-v1"]
    seeds = [e.seed for e in episodes_for(spec.id, 0, 2)]
    with CpuWorkerEnvs(1) as one, CpuWorkerEnvs(2, processes=1) as two, CpuWorkerEnvs(1) as three:
        one.start_task(spec)
        two.begin_task(spec)
        three.begin_task(suite.tasks["PushCube-v1"])
        assert two.start_task(spec)[0].shape == three.start_task(spec)[0].shape == (7,)
        batched = two.reset(seeds)
        first = one.reset(seeds[:1])
        second = one.reset(seeds[1:])  # same worker, after another episode: order must not matter
        third = three.reset(seeds[:1])
        hold = np.zeros((1, 7), np.float32)
        two.step_async(hold, [1])
        two.step_async(hold, [0])  # the shared process answers slot 1 first: replies must find their requests
        stepped = {0: two.step_wait([0]), 1: two.step_wait([1])}
        alone = one.step(hold)  # `one` runs seeds[1]'s episode now
    for key in ("extra/obj_pose", "agent/qpos"):
        np.testing.assert_array_equal(stepped[1].obs[key], alone.obs[key], err_msg=key)
        assert not np.array_equal(stepped[0].obs[key], stepped[1].obs[key])
    assert batched["sensor_data/base_camera/rgb"].shape == (2, 224, 224, 3)
    assert batched["sensor_data/hand_camera/rgb"].shape == (2, 224, 224, 3)
    for key, value in batched.items():
        np.testing.assert_array_equal(value[:1], first[key], err_msg=key)
        np.testing.assert_array_equal(value[1:], second[key], err_msg=key)
        np.testing.assert_array_equal(third[key], first[key], err_msg=key)
    assert not np.array_equal(first["extra/obj_pose"], second["extra/obj_pose"])


@pytest.mark.timeout(900)
def test_zero_policy_results_identical_for_num_envs_1_and_2(bench, tmp_path, short_tasks):
    """(Identical across runs: tests/test_reliability.py holds resumed and faulty runs against a reference.)"""
    common = ["run", "--policy", "zero", "--tasks", "PushCube-v1", "--episodes", "2", "--seed", "11", "--tasks-dir",
              str(short_tasks)]
    runs = {}
    for name, num_envs in [("a1", 1), ("b2", 2)]:
        code, _ = bench(*common, "--num-envs", str(num_envs), "--output", str(tmp_path / name))
        assert code == 0
        runs[name] = run_dir_of(tmp_path / name)
    assert len(episodes_without_timing(runs["a1"])) == 2
    assert_same_results(runs["a1"], runs["b2"])
    manifest = read_manifest(runs["b2"])
    assert manifest["status"] == "completed"
    assert manifest["config"]["seed"] == 11
    assert manifest["env_processes"] == min(2, len(os.sched_getaffinity(0)))  # one per core by default
    assert manifest["suite"]["version"]
    assert manifest["packages"]["mani_skill"] == "3.0.1"
    assert (runs["b2"] / "episodes.parquet").is_file()
    assert (runs["b2"] / "leaderboard.md").read_text().count("PushCube-v1") == 1
