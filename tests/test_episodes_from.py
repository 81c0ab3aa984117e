"""`bench run --episodes-from DATASET`: evaluate on the episodes a `bench record` dataset holds (its seeds, not
bench's evaluation seeds), with the cheap refusals and a contract that keeps such runs apart from normal ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.datasets.read import open_dataset
from bench.record import RECORD_SEED_OFFSET
from bench.results import read_episodes, read_manifest

TASK = "PushCube-v1"


@pytest.fixture(scope="module")
def dataset(pushcube_recording) -> Path:
    """The expert on 3 PushCube episodes, v2.1 with PNG frames (conftest)."""
    return pushcube_recording


@pytest.fixture(scope="module")
def replayed(dataset, short_tasks, tmp_path_factory) -> Path:
    """The expert run on the dataset's episodes."""
    from bench.cli import main

    output = tmp_path_factory.mktemp("runs")
    assert main(["run", "--policy", "expert", "--episodes-from", str(dataset), "--tasks-dir", str(short_tasks),
                 "--num-envs", "2", "--output", str(output), "--run-id", "replay"]) == 0
    return output / "replay"


def test_the_run_evaluates_the_datasets_episodes_and_the_expert_reproduces_them(dataset, replayed):
    recorded = sorted(open_dataset(dataset).episodes, key=lambda e: e["episode_index"])
    run = read_episodes(replayed).sort_values("episode").reset_index(drop=True)
    assert list(run["task"]) == [TASK] * len(recorded) == [e["task_id"] for e in recorded]
    assert list(run["episode"]) == list(range(len(recorded)))
    assert list(run["seed"]) == [e["seed"] for e in recorded]
    assert all(seed >= RECORD_SEED_OFFSET for seed in run["seed"])  # the recording's seed range, not evaluation's
    assert list(run["success_once"].astype(bool)) == [bool(e["success"]) for e in recorded]
    manifest = read_manifest(replayed)
    assert manifest["config"]["episodes_from"] == str(dataset.resolve())
    assert manifest["config"]["tasks"] == TASK  # the default: the dataset's tasks
    assert manifest["episodes_from"]["dataset"] == str(dataset.resolve())
    assert manifest["episodes_from"]["episodes"] == {TASK: len(recorded)}
    assert manifest["contract"]["evaluation"]["episodes_from"] == manifest["episodes_from"]["digest"]


def _refused(bench, tmp_path, *args: str) -> str:
    output = tmp_path / "out"
    code, text = bench("run", "--policy", "zero", "--output", str(output), *args)
    assert code == 2, text
    assert not output.exists() or not any(output.iterdir())
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    return text


def test_bad_inputs_are_refused_before_anything_starts(bench, dataset, short_tasks, tmp_path):
    tasks_dir = ["--tasks-dir", str(short_tasks)]
    text = _refused(bench, tmp_path, "--episodes-from", str(tmp_path / "nowhere"), *tasks_dir)
    assert "nowhere" in text and "no such folder" in text
    text = _refused(bench, tmp_path, "--episodes-from", str(dataset), "--tasks", "PickCube-v1", *tasks_dir)
    assert "holds no episodes of PickCube-v1" in text and TASK in text
    text = _refused(bench, tmp_path, "--episodes-from", str(dataset), "--seed", "3", *tasks_dir)
    assert "--seed" in text
    foreign = tmp_path / "foreign"  # a LeRobot dataset bench did not record: no per-episode seeds
    shutil.copytree(dataset, foreign)
    (foreign / "meta" / "bench.json").unlink()
    (foreign / "meta" / "bench_episodes.jsonl").unlink()
    text = _refused(bench, tmp_path, "--episodes-from", str(foreign), *tasks_dir)
    assert "bench record" in text


def test_an_episodes_from_run_does_not_compare_with_a_normal_one(bench, replayed, short_tasks, tmp_path):
    code, text = bench("run", "--policy", "zero", "--tasks", TASK, "--episodes", "1", "--num-envs", "1",
                       "--tasks-dir", str(short_tasks), "--output", str(tmp_path), "--run-id", "normal")
    assert code == 0, text
    assert "episodes_from" not in read_manifest(tmp_path / "normal")["contract"]["evaluation"]
    code, text = bench("compare", str(tmp_path / "normal"), str(replayed))
    assert code == 2 and "not evaluated the same way" in text and "evaluation.episodes_from" in text, text


def test_two_runs_over_the_same_dataset_share_their_contract(dataset, replayed, short_tasks):
    """Another policy, fewer episodes, the same dataset: the static contract `bench run` checks a --baseline with
    matches the replay's (no simulation: `_prepare` only)."""
    from bench import contract
    from bench.config import RunConfig
    from bench.runner import _prepare

    plan = _prepare(RunConfig(policy="zero", episodes_from=dataset, episodes=1, tasks_dir=short_tasks,
                              output=replayed.parent, run_id="other"))
    assert {t: [e.seed for e in es] for t, es in plan.episodes.items()} == \
        {TASK: list(read_episodes(replayed)["seed"])[:1]}
    static = contract.build(plan.config, plan.suite.version, plan.tasks, None, None, None,
                            contract.package_versions(), plan.episodes_from["digest"])
    assert contract.differences(read_manifest(replayed)["contract"], static) == []


def test_resume_needs_the_dataset_where_it_was(bench, dataset, replayed, tmp_path, _started_early):
    _started_early["pushcube_recording"].wait()  # the background runs on the recording (tests/conftest.py) are done
    moved = tmp_path / "moved"
    manifest = json.loads((replayed / "manifest.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(replayed, run)
    shutil.move(dataset, moved)
    try:
        code, text = bench("run", "--resume", str(run))
    finally:
        shutil.move(moved, dataset)
    assert code == 2 and manifest["config"]["episodes_from"] in text and "no longer there" in text, text
