"""Fault injection on real ManiSkill environments (CPU): kills, resume, policy failures, dead or hung env workers.

Every run here is the random policy on PickCube-v1 with a 50-step budget (the `short_tasks` copy of tasks/),
4 episodes in 2 env slots: two waves, so a failure in one wave can be told apart from the other.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from bench.envs import CpuWorkerEnvs
from bench.results import RUN_COLUMNS, read_episodes, read_manifest
from bench.tasks import episodes_for, load_suite


pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def args(short_tasks: Path, output: Path, run_id: str, *extra: str) -> list[str]:
    return ["run", "--policy", "random", "--tasks", "PickCube-v1", "--episodes", "4", "--num-envs", "2",
            "--tasks-dir", str(short_tasks), "--output", str(output), "--run-id", run_id, *extra]


def comparable(run: Path) -> pd.DataFrame:
    episodes = read_episodes(run).sort_values("episode").reset_index(drop=True)
    return episodes.drop(columns=[c for c in RUN_COLUMNS if c in episodes])  # what may differ between runs


@pytest.fixture(scope="module")
def reference(short_tasks, tmp_path_factory) -> Path:
    """The uninterrupted run every faulty one is held against."""
    from bench.cli import main

    output = tmp_path_factory.mktemp("reference")
    assert main(args(short_tasks, output, "ref")) == 0
    return output / "ref"


def start(short_tasks: Path, output: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args(short_tasks, output, run_id)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_records(run: Path, count: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = run / "episodes.jsonl"
        if path.is_file() and path.read_text().count("\n") >= count:
            return
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    raise AssertionError(f"no {count} records in {run} after {timeout} s")


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_results(bench, short_tasks, reference, tmp_path):
    proc = start(short_tasks, tmp_path, "killed")
    wait_for_records(tmp_path / "killed", 2, proc)  # the first wave is on disk, the second is running
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its env workers, with no chance to clean up
    proc.wait()
    run = tmp_path / "killed"
    assert read_manifest(run)["status"] == "running"  # readable, and visibly unfinished
    assert len(read_episodes(run)) == 2
    with (run / "episodes.jsonl").open("a") as f:
        f.write('{"task": "PickCube-v1", "episo')  # the record being written when the kill came
    code, text = bench("run", "--resume", str(run))
    assert code == 0, text
    assert "resuming (2 of 4 episodes already finished)" in " ".join(text.split())
    pd.testing.assert_frame_equal(comparable(run), comparable(reference))
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and len(manifest["resumed"]) == 1


def test_resume_refuses_other_settings_and_extra_options(bench, short_tasks, reference, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    code, text = bench("run", "--resume", str(run), "--episodes", "8")
    assert code == 2 and "--resume takes every setting from the run's manifest" in text
    spec = Path(read_manifest(run)["config"]["tasks_dir"]) / "PickCube-v1.toml"
    original = spec.read_text()
    try:
        spec.write_text(original.replace("max_steps = 50", "max_steps = 51"))
        code, text = bench("run", "--resume", str(run))
    finally:
        spec.write_text(original)
    text = " ".join(text.split())
    assert code == 2 and "it was started with other settings" in text and "tasks.PickCube-v1.max_steps: 50 != 51" in text


def assert_worker_lost_and_episode_retried(bench, short_tasks: Path, reference: Path, tmp_path: Path, signal_name: str,
                                           *options: str, lost: int = 1):
    """A run whose newest env worker gets `signal_name` in the middle of wave 1 (random actions otherwise) ends
    completed, with that worker replaced and its `lost` episodes (one per slot it hosted) run again, exactly as in
    the uninterrupted run."""
    preset = tmp_path / "killer.toml"
    preset.write_text(f'plugin = "faulty_policies:WorkerKiller"\n[params]\nkill_at = 2\nsignal_name = "{signal_name}"')
    code, text = bench("run", "--policy", str(preset), *args(short_tasks, tmp_path, "worker", *options)[3:])
    assert code == 0, text
    run = tmp_path / "worker"
    episodes = read_episodes(run).set_index("episode").sort_index()
    assert (episodes["status"] == "ok").all() and episodes["retry"].sum() == lost  # the episodes of the lost slots
    manifest = read_manifest(run)
    assert manifest["status"] == "completed" and manifest["env_restarts"] == 1
    pd.testing.assert_frame_equal(comparable(run), comparable(reference))  # the retry replayed its episode exactly


def test_a_killed_env_worker_is_restarted_and_its_episode_retried(bench, short_tasks, reference, tmp_path):
    assert_worker_lost_and_episode_retried(bench, short_tasks, reference, tmp_path, "SIGKILL")


def test_a_killed_worker_hosting_both_lanes_loses_both_episodes_and_nothing_else(bench, short_tasks, reference,
                                                                                 tmp_path):
    """--env-processes 1: both slots of a wave live in one worker process, one per lane, so the worker answers the two
    lanes' steps in whatever order they were sent. Until the kill, and after its replacement, the results are those
    of the reference run (one process per slot); the kill ends both slots' episodes, which run again."""
    assert_worker_lost_and_episode_retried(bench, short_tasks, reference, tmp_path, "SIGKILL", "--env-processes", "1",
                                           lost=2)
    manifest = read_manifest(tmp_path / "worker")
    assert manifest["config"]["env_processes"] == manifest["env_processes"] == 1


def test_a_hung_env_worker_is_killed_after_the_timeout_and_its_episode_retried(bench, short_tasks, reference, tmp_path):
    """SIGSTOP: the worker hangs without dying. After --worker-timeout (5 s here, not the default 120 s) the driver
    kills it and goes on as for a crash; without a timeout this run would wait forever."""
    assert_worker_lost_and_episode_retried(bench, short_tasks, reference, tmp_path, "SIGSTOP", "--worker-timeout", "5")


def test_a_stopped_env_worker_costs_one_timeout_then_is_replaced(short_tasks, monkeypatch):
    """CpuWorkerEnvs alone: a stopped worker's step returns after the timeout with the slot in `failed` (the reason
    names slot, pid, command and timeout), the next reset replaces the worker, and close() never waits on one."""
    monkeypatch.setattr("bench.envs.cpu_workers.CLOSE_TIMEOUT_S", 2.0)
    spec = load_suite(short_tasks).tasks["PushCube-v1"]
    seed = episodes_for(spec.id, 0, 1)[0].seed
    envs = CpuWorkerEnvs(1, step_timeout_s=3)
    try:
        low, _ = envs.start_task(spec)
        envs.reset([seed])
        pid = envs._workers[0][0].pid
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        out = envs.step(np.zeros((1, len(low)), np.float32))
        assert 3 <= time.monotonic() - started < 8
        assert out.failed == {0: f"CPU env worker 0 (pid {pid}) did not answer 'step' within 3 s: killed"}
        assert not psutil.pid_exists(pid)  # killed and reaped
        envs.reset([seed])
        assert envs.restarts == 1
        assert not envs.step(np.zeros((1, len(low)), np.float32)).failed
        os.kill(envs._workers[0][0].pid, signal.SIGSTOP)
        started = time.monotonic()
    finally:
        envs.close()
    assert time.monotonic() - started < 6  # the close deadline (2 s here) and a kill, not a wait on the worker


def test_a_policy_failing_on_some_envs_leaves_the_others_intact(bench, short_tasks, reference, tmp_path):
    preset = tmp_path / "faulty.toml"
    preset.write_text('plugin = "faulty_policies:FaultyRandom"\n[params]\nraise_on = [1]\nnan_on = [2]\n')
    output = tmp_path / "out"
    code, text = bench("run", "--policy", str(preset), "--tasks", "PickCube-v1", "--episodes", "4", "--num-envs",
                       "2", "--tasks-dir", str(short_tasks), "--output", str(output), "--run-id", "faulty",
                       "--max-error-share", "0.5")
    assert code == 0, text
    episodes = read_episodes(output / "faulty").set_index("episode").sort_index()
    assert list(episodes["status"]) == ["ok", "error", "error", "ok"]
    assert episodes.loc[1, "error"] == "policy 'faulty' raised RuntimeError: injected failure"
    assert episodes.loc[2, "error"] == "policy 'faulty' returned NaN or infinite actions"
    assert not episodes.loc[[1, 2], "success_once"].any()
    ok = comparable(output / "faulty").query("status == 'ok'").drop(columns="error").reset_index(drop=True)
    expected = comparable(reference).query("episode in (0, 3)").drop(columns="error").reset_index(drop=True)
    pd.testing.assert_frame_equal(ok, expected)
    board = (output / "faulty" / "leaderboard.md").read_text()
    assert "| PickCube-v1 | 2 | 2 |" in board  # 2 episodes counted, 2 errors apart

    code, text = bench("run", "--policy", str(preset), "--tasks", "PickCube-v1", "--episodes", "4", "--num-envs",
                       "2", "--tasks-dir", str(short_tasks), "--output", str(output), "--run-id", "aborted")
    assert code == 1
    assert "1 of 4 episodes ended in error, more than --max-error-share 0.1 allows" in " ".join(text.split())
    assert read_manifest(output / "aborted")["status"] == "aborted"
    assert len(read_episodes(output / "aborted")) == 2  # the first wave, kept


def batch_failure_run(bench, short_tasks: Path, output: Path, plugin: str, episodes: int = 4) -> pd.DataFrame:
    """`episodes` (>= 3) in one wave and ONE lane; the batched call raises after drawing every slot's actions
    (episode 1 fails), so the runner must ask each slot again alone."""
    preset = output.parent / f"{plugin}.toml"
    preset.write_text(f'plugin = "faulty_policies:{plugin}"\n[params]\nraise_on = [1]\ndraw_first = true\nlanes = 1\n')
    code, text = bench("run", "--policy", str(preset), "--tasks", "PickCube-v1", "--episodes", str(episodes),
                       "--num-envs", str(episodes), "--tasks-dir", str(short_tasks), "--output", str(output),
                       "--run-id", "batch", "--max-error-share", "1")
    assert code == 0, text
    episodes = read_episodes(output / "batch")
    assert set(episodes["lanes"]) == {1} and set(episodes["wave_size"]) == {len(episodes)}
    return episodes.set_index("episode").sort_index()


def test_a_failed_batch_is_retried_slot_by_slot_from_the_state_before_it(bench, short_tasks, reference, tmp_path):
    episodes = batch_failure_run(bench, short_tasks, tmp_path / "out", "FaultyRandom")
    assert list(episodes["status"]) == ["ok", "error", "ok", "ok"]
    ok = comparable(tmp_path / "out" / "batch").query("status == 'ok'").drop(columns="error").reset_index(drop=True)
    expected = comparable(reference).query("episode in (0, 2, 3)").drop(columns="error").reset_index(drop=True)
    pd.testing.assert_frame_equal(ok, expected)  # their random draws were restored before they were asked again


def test_a_failed_batch_of_a_policy_without_snapshots_fails_its_episodes(bench, short_tasks, tmp_path):
    episodes = batch_failure_run(bench, short_tasks, tmp_path / "out", "FaultyWithoutSnapshots", episodes=3)
    assert (episodes["status"] == "error").all()  # none of them can act as an uninterrupted run would
    assert "cannot snapshot its per-episode state" in episodes.loc[0, "error"]


def test_concurrent_runs_and_a_reader_never_corrupt_each_other(short_tasks, tmp_path):
    """Two runs write into one results/ folder while `bench leaderboard` reads it over and over."""
    from bench.report import leaderboard

    procs = [subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--policy", policy, "--tasks", "PickCube-v1",
                               "--episodes", "2", "--num-envs", "1", "--tasks-dir", str(short_tasks), "--output",
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for policy in ("random", "zero")]
    reads = 0
    while any(p.poll() is None for p in procs):
        leaderboard(tmp_path)  # partial records, half-written manifests: must never raise
        reads += 1
        time.sleep(0.05)
    assert [p.wait() for p in procs] == [0, 0], [p.stdout.read().decode()[-2000:] for p in procs]
    assert reads > 10
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) == 2 and sorted(read_manifest(r)["policy"]["name"] for r in runs) == ["random", "zero"]
    assert all(len(read_episodes(r)) == 2 and read_manifest(r)["status"] == "completed" for r in runs)
    assert set(leaderboard(tmp_path)["policy"]) == {"random", "zero"}
    zero = next(r for r in runs if read_manifest(r)["policy"]["name"] == "zero")
    assert not read_episodes(zero)["success_once"].any()  # holding still never picks the cube


def test_a_run_folder_has_one_writer(tmp_path):
    from bench.errors import BenchError
    from bench.results import RunWriter

    writer = RunWriter(tmp_path / "run", {"run_id": "run"})
    with pytest.raises(BenchError, match="being written by another bench process"):
        RunWriter(tmp_path / "run", {"run_id": "run"}, resume=True)
    writer.finish("completed")
    RunWriter(tmp_path / "run", read_manifest(tmp_path / "run"), resume=True).finish("completed")
