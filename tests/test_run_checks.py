"""`bench run` refuses what it can before anything starts, shows a run only once it is one, resumes suite runs, and
survives a full disk. Real ManiSkill runs (CPU) where a run is needed."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench.engine
from bench.results import read_episodes, read_manifest

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def no_workers(monkeypatch):
    """Fails the test if the run gets as far as starting environment workers."""

    def refuse(*args, **kwargs):
        raise AssertionError("environment workers were started")

    monkeypatch.setattr(bench.engine, "open_physics", refuse)


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_an_output_path_that_cannot_be_created_is_refused_before_any_worker(bench, no_workers):
    code, text = bench("run", "--policy", "expert", "--tasks", "PushCube-v1", "--episodes", "1", "--output", "/proc/x")
    assert code == 2 and "cannot write results to /proc/x" in one_line(text) and "--output" in text
    assert "Traceback" not in text and not Path("/proc/x").exists()


def test_a_pi_policy_without_checkpoint_is_refused_before_any_worker(bench, tmp_path, no_workers):
    code, text = bench("run", "--policy", "pi05", "--tasks", "PickCube-v1", "--output", str(tmp_path / "out"))
    assert code == 2 and "needs a checkpoint: pass --checkpoint" in one_line(text)
    assert "running" not in text and "0/50" not in text and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def baseline(short_tasks, tmp_path_factory) -> Path:
    from bench.cli import main

    output = tmp_path_factory.mktemp("baseline")
    assert main(["run", "--policy", "random", "--tasks", "PushCube-v1", "--episodes", "1", "--num-envs", "1",
                 "--tasks-dir", str(short_tasks), "--output", str(output), "--run-id", "base"]) == 0
    return output / "base"


def test_a_baseline_evaluated_otherwise_is_refused_before_any_worker(bench, short_tasks, baseline, tmp_path,
                                                                      no_workers):
    code, text = bench("run", "--policy", "random", "--tasks", "PushCube-v1", "--episodes", "1", "--tasks-dir",
                       str(short_tasks), "--seed", "1", "--baseline", str(baseline), "--output", str(tmp_path / "out"))
    assert code == 2, text
    assert f"would not evaluate what the baseline {baseline} did" in one_line(text)
    assert "evaluation.seed: 0 != 1" in text and not (tmp_path / "out").exists()


def test_a_killed_suite_run_resumes(bench, short_tasks, baseline, tmp_path):
    tasks = tmp_path / "tasks"
    shutil.copytree(short_tasks, tasks)
    with (tasks / "suite.toml").open("a") as f:
        f.write('\n[suites.mini]\ntasks = ["PushCube-v1"]\nepisodes = 2\n')
    code, text = bench("run", "--policy", "random", "--suite", "mini", "--num-envs", "1", "--tasks-dir", str(tasks),
                       "--output", str(tmp_path), "--run-id", "suite")
    assert code == 0, text
    run = tmp_path / "suite"
    lines = (run / "episodes.jsonl").read_text().splitlines(keepends=True)
    (run / "episodes.jsonl").write_text(lines[0])  # as if killed after its first episode
    code, text = bench("run", "--resume", str(run))
    assert code == 0, text
    assert "resuming (1 of 2 episodes already finished)" in one_line(text)
    assert (run / "episodes.jsonl").read_text() .splitlines()[1] .split('"wall_time_s"')[0] == \
        lines[1].split('"wall_time_s"')[0]  # the resumed episode recorded as the first time, timing aside
    base = read_episodes(baseline).iloc[0]
    assert read_episodes(run).set_index("episode").loc[0, "return"] == base["return"]  # same pinned episode


def test_a_disk_that_refuses_writes_keeps_every_finished_episode(bench, short_tasks, tmp_path):
    """In a process of its own, the run's disk refuses to grow episodes.jsonl during episode 1 (of 2, one slot):
    one line, exit 1, episode 0 kept readable; --resume then finishes the run."""
    run = tmp_path / "out" / "refused"
    preset = tmp_path / "refuser.toml"
    preset.write_text(f'plugin = "faulty_policies:DiskRefuser"\n[params]\nrefuse_at = 60\n'
                      f'path = "{run / "episodes.jsonl"}"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "PYTHONDONTWRITEBYTECODE": "1"}  # a .pyc written under the file-size limit would be cut short for all
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--policy", str(preset), "--tasks", "PushCube-v1",
                           "--episodes", "2", "--num-envs", "1", "--tasks-dir", str(short_tasks), "--output",
                           str(run.parent), "--run-id", run.name], env=env, capture_output=True, text=True)
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert "File too large; every episode finished before (1) is saved" in one_line(text), text
    assert "Traceback" not in text
    assert list(read_episodes(run)["episode"]) == [0]  # whole and readable
    assert not list(run.glob(".manifest.json.*"))  # no half-written manifest left behind
    code, text = bench("run", "--resume", str(run))
    assert code == 0, text
    assert sorted(read_episodes(run)["episode"]) == [0, 1] and read_manifest(run)["status"] == "completed"
