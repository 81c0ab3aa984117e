"""Baselines and the scripted expert through `bench run` on real ManiSkill envs (CPU physics, lavapipe)."""

import json

import pandas as pd
import pytest

from bench.results import read_episodes

from conftest import read_manifest, run_dir_of

SIX = ["PickCube-v1", "StackCube-v1", "PushCube-v1", "PullCube-v1", "PlaceSphere-v1", "PegInsertionSide-v1"]
MUST_SOLVE = ["PickCube-v1", "PushCube-v1", "PullCube-v1", "StackCube-v1"]


@pytest.mark.timeout(1500)
def test_expert_solves_the_cube_tasks_and_runs_all_six(bench, tmp_path):
    code, text = bench("run", "--policy", "expert", "--tasks", "all", "--episodes", "4", "--num-envs", "2",
                       "--output", str(tmp_path))
    assert code == 0, text
    run = run_dir_of(tmp_path)
    episodes = read_episodes(run)
    assert sorted(episodes["task"].unique()) == sorted(SIX)
    assert (episodes.groupby("task").size() == 4).all()
    rates = episodes.groupby("task")["success_once"].mean()
    for task in MUST_SOLVE:
        assert rates[task] >= 0.6, f"{task}: expert success_once {rates[task]:.2f}"
    # the Parquet table and the leaderboard files agree with the per-episode records
    assert pd.read_parquet(run / "episodes.parquet")["success_once"].sum() == episodes["success_once"].sum()
    board = pd.read_csv(run / "leaderboard.csv").set_index("task")
    assert board.loc["PickCube-v1", "success_once"] == pytest.approx(rates["PickCube-v1"])
    assert "PickCube-v1" in text and "success_once" in text
    manifest = read_manifest(run)
    assert manifest["policy"]["name"] == "expert" and manifest["environments"]["backend"] == "cpu"
    assert [t["id"] for t in manifest["suite"]["tasks"]] == SIX
    json.dumps(manifest)


def run_pickcube(bench, output, policy, run_id):
    code, text = bench("run", "--policy", policy, "--tasks", "PickCube-v1", "--episodes", "4", "--num-envs", "2",
                       "--output", str(output), "--run-id", run_id)
    assert code == 0, text
    return read_episodes(output / run_id).drop(columns=["wall_time_s", "sim_time_s", "policy_time_s", "run_id"])


@pytest.mark.timeout(900)
def test_zero_fails_pickcube(bench, tmp_path):
    assert run_pickcube(bench, tmp_path, "zero", "z")["success_once"].mean() <= 0.2


@pytest.mark.timeout(900)
def test_random_fails_pickcube_reproducibly_and_leaderboard_aggregates(bench, tmp_path):
    first = run_pickcube(bench, tmp_path, "random", "r1")
    second = run_pickcube(bench, tmp_path, "random", "r2")
    assert len(first) == 4 and first["success_once"].mean() <= 0.2
    assert first.equals(second)
    assert first["return"].nunique() > 1  # different episodes really differ
    code, text = bench("leaderboard", str(tmp_path))
    assert code == 0 and "random" in text and "PickCube-v1" in text
