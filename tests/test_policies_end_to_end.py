"""The scripted expert through `bench run` on every task, real ManiSkill envs (CPU physics, lavapipe).
(random and zero are run end to end in test_compare.py and test_reliability.py.)"""

import json

import pandas as pd
import pytest

from bench.results import read_episodes

from conftest import read_manifest, run_dir_of

SIX = ["PickCube-v1", "StackCube-v1", "PushCube-v1", "PullCube-v1", "PlaceSphere-v1", "PegInsertionSide-v1"]
MUST_SOLVE = ["PickCube-v1", "PushCube-v1", "PullCube-v1", "StackCube-v1"]


@pytest.mark.timeout(1500)
def test_expert_solves_the_cube_tasks_and_runs_all_six(bench, tmp_path):
    """The smoke suite (all six tasks, full budgets), one episode each: what a user's CI gate runs."""
    code, text = bench("run", "--policy", "expert", "--suite", "smoke", "--episodes", "1", "--num-envs", "2",
                       "--output", str(tmp_path))
    assert code == 0, text
    run = run_dir_of(tmp_path)
    episodes = read_episodes(run)
    assert sorted(episodes["task"].unique()) == sorted(SIX)
    assert (episodes.groupby("task").size() == 1).all()
    rates = episodes.groupby("task")["success_once"].mean()
    for task in MUST_SOLVE:
        assert rates[task] == 1.0, f"{task}: the expert failed its pinned episode"
    # the Parquet table and the leaderboard files agree with the per-episode records
    assert pd.read_parquet(run / "episodes.parquet")["success_once"].sum() == episodes["success_once"].sum()
    board = pd.read_csv(run / "leaderboard.csv").set_index("task")
    assert board.loc["PickCube-v1", "success_once"] == pytest.approx(rates["PickCube-v1"])
    assert "PickCube-v1" in text and "success_once" in text
    manifest = read_manifest(run)
    assert manifest["policy"]["name"] == "expert" and set(manifest["environments"]["backends"].values()) == {"cpu"}
    assert [t["id"] for t in manifest["suite"]["tasks"]] == SIX
    assert manifest["config"]["tasks"] == "smoke" and manifest["config"]["episodes"] == 1  # the suite, resolved
    json.dumps(manifest)
