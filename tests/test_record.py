"""`bench record`: real ManiSkill rollouts written as LeRobot datasets, read back by lerobot 0.6.1 and bench's reader,
held against bench's own observation pipeline; crash safety with SIGKILL; the cheap refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.datasets.read import open_dataset
from bench.datasets.stats import openpi_batches
from bench.record import RECORD_SEED_OFFSET

from conftest import require

TASK = "PushCube-v1"
RECORD = ["record", "--layout", "pi05", "--tasks", TASK, "--episodes", "2", "--end-after-success", "3"]


def _record_args(short_tasks: Path, output: Path, *extra: str) -> list[str]:
    return [*RECORD, "--tasks-dir", str(short_tasks), "--output", str(output), *extra]


# Kills the recording's process group once its dataset holds an episode (or after 240 s). A process of its own, not a
# thread of pytest's: the tests running meanwhile in pytest's process can hold the GIL for seconds inside SAPIEN or
# PyAV, long enough for the recording to finish unkilled (CI saw it once, with the window ~5 s wide).
KILL_ONCE_COMMITTED = """
import json, os, signal, sys, time
pid, info, deadline = int(sys.argv[1]), sys.argv[2], time.monotonic() + 240
while time.monotonic() < deadline:
    try:
        if json.load(open(info))["total_episodes"] >= 1:
            break
    except (OSError, ValueError):
        pass
    time.sleep(0.05)
try:
    os.killpg(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


@pytest.fixture(scope="module")
def killed_recording(short_tasks, tmp_path_factory):
    """The same recording as `recorded`, one env, in a process of its own (a new session), SIGKILLed by a watcher
    process as soon as its first episode is committed; (dataset folder, the watcher, the recording). `recorded` asks
    for it first, so that this process starts (its imports, its env workers) while `recorded` records instead of
    after it."""
    require("lerobot.datasets.lerobot_dataset", "bench record writes v3.0 with lerobot 0.6.1 (pip install -e .[lerobot])")
    output = tmp_path_factory.mktemp("killed") / "ds"
    command = [sys.executable, "-m", "bench.cli", *_record_args(short_tasks, output, "--num-envs", "1")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    watcher = subprocess.Popen([sys.executable, "-c", KILL_ONCE_COMMITTED, str(process.pid),
                                str(output / "meta" / "info.json")])
    yield output, watcher, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    watcher.kill()
    watcher.wait()
    process.wait()


@pytest.fixture(scope="module")
def recorded(killed_recording, short_tasks, tmp_path_factory) -> Path:
    """One v3.0 recording (lerobot keys, video) of the expert on 2 PushCube episodes, shared by the tests."""
    from bench.cli import main

    output = tmp_path_factory.mktemp("record") / "ds"
    assert main(_record_args(short_tasks, output, "--num-envs", "2")) == 0
    return output


def test_v30_dataset_loads_in_lerobot_and_holds_what_bench_run_feeds_pi05(recorded, short_tasks):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from bench.envs import flatten_obs, make_maniskill_env
    from bench.policies import pi_transforms
    from bench.tasks import load_suite

    lerobot = LeRobotDataset("bench/test", root=recorded, video_backend="pyav")
    assert lerobot.fps == 20 and lerobot.meta.total_episodes == 2
    assert {"observation.images.base_0_rgb", "observation.images.left_wrist_0_rgb", "observation.state",
            "action"} <= set(lerobot.features)
    spec = load_suite(short_tasks).tasks[TASK]
    item = lerobot[0]
    assert item["task"] == spec.instruction and item["observation.state"].shape == (8,)

    ds = open_dataset(recorded)
    assert ds.version == "v3.0" and ds.keys["state"] == "observation.state" and ds.bench["control_mode"] == \
        "pd_ee_delta_pose"
    for episode in ds.episodes:  # recording seeds are never evaluation seeds; frames end 3 after the success
        assert RECORD_SEED_OFFSET <= episode["seed"] < 2**32 and episode["success"]
        assert episode["length"] == episode["first_success_step"] + 3 == episode["frames"]
    first = ds.episodes[0]
    frames = ds.frames(0)
    assert frames["task"] == [spec.instruction] * first["length"]
    assert np.allclose(frames["timestamp"], np.arange(first["length"]) / 20)
    assert np.abs(frames["action"]).max() <= 1

    env = make_maniskill_env(spec, num_envs=1, sim_backend="physx_cpu")  # bench's env, at the recorded seed
    try:
        obs = flatten_obs(env.reset(seed=first["seed"])[0])
    finally:
        env.close()
    steps = pi_transforms.observation_steps({"base_0_rgb": "base_camera", "left_wrist_0_rgb": "hand_camera"}, "qpos8")
    expected = pi_transforms.Pipeline(steps)(pi_transforms.Frame(obs, [spec.instruction]))
    np.testing.assert_array_equal(frames["observation.state"][0], expected.state[0])
    base, wrist = (frames[ds.keys[k]][0].astype(int) for k in ("base_0_rgb", "left_wrist_0_rgb"))
    # H.264 (yuv420p, crf 18) is close to the pipeline's images, not exact; the other camera is far from each
    assert np.abs(base - expected.images["base_0_rgb"][0]).mean() < 6 < np.abs(base - wrist).mean()
    assert np.abs(wrist - expected.images["left_wrist_0_rgb"][0]).mean() < 6


def test_norm_stats_are_openpi_running_stats_of_state_and_action_chunks(recorded):
    ds = open_dataset(recorded)
    stats = ds.norm_stats()["norm_stats"]
    vectors = [ds.vectors(e["episode_index"]) for e in ds.episodes]
    states = np.concatenate([s for s, _ in openpi_batches(vectors, 50)])
    chunks = np.concatenate([a for _, a in openpi_batches(vectors, 50)])
    assert chunks.shape[1:] == (50, 7) and len(states) % 32 == 0
    np.testing.assert_allclose(stats["state"]["mean"], states.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["actions"]["std"], chunks.reshape(-1, 7).std(axis=0), rtol=1e-3, atol=1e-5)
    assert np.all(np.array(stats["state"]["q01"]) <= np.array(stats["state"]["q99"]))
    assert ds.bench["openpi_norm_stats"]["action_horizon"] == 50
    lerobot_stats = json.loads((recorded / "meta" / "stats.json").read_text())
    assert {"mean", "std", "q01", "q99"} <= set(lerobot_stats["observation.state"])


def test_killed_recording_leaves_a_valid_dataset_and_resume_finishes_it(recorded, killed_recording):
    """SIGKILL once the first episode is committed (`killed_recording`): a valid v2.1 dataset of it; --resume
    completes the v3.0 dataset with the very frames of the uninterrupted recording."""
    output, watcher, process = killed_recording
    watcher.wait()
    assert process.wait() == -signal.SIGKILL
    killed = open_dataset(output)
    assert killed.version == "v2.1" and len(killed.episodes) == 1 and killed.bench["status"] == "recording"
    assert len(killed.frames(0)["observation.state"]) == killed.episodes[0]["length"]

    from bench.cli import main

    assert main(["record", "--output", str(output), "--resume", "--num-envs", "1"]) == 0
    resumed, reference = open_dataset(output), open_dataset(recorded)
    assert resumed.version == "v3.0" and resumed.bench["status"] == "complete"
    assert [(e["task_id"], e["episode"], e["seed"]) for e in resumed.episodes] == \
        [(e["task_id"], e["episode"], e["seed"]) for e in reference.episodes]
    for episode in reference.episodes:
        a, b = resumed.frames(episode["episode_index"]), reference.frames(episode["episode_index"])
        for key in ("observation.state", "action", "observation.images.base_0_rgb"):
            np.testing.assert_array_equal(a[key], b[key])


def test_only_success_lists_failures_without_writing_them(short_tasks, tmp_path, bench):
    output = tmp_path / "ds"
    code, out = bench("record", "--policy", "zero", "--layout", "pi05", "--tasks", TASK, "--episodes", "1",
                      "--num-envs", "1", "--only-success", "--format", "v2.1", "--tasks-dir", str(short_tasks),
                      "--output", str(output))
    assert code == 0 and "0 episodes" in out and "1 not written" in out
    ds = open_dataset(output)
    assert ds.episodes == [] and [(r["task_id"], r["success"]) for r in ds.skipped()] == [(TASK, False)]


@pytest.mark.parametrize("args, message", [
    (["--policy", "zero"], "--layout pi0 or --layout pi05"),
    (["--keys", "droid"], "--keys is one of lerobot, openpi"),
    (["--layout", "pi05", "--end-after-success", "-1"], "--end-after-success must be >= 0"),
])
def test_bad_input_exits_2_before_anything_starts(args, message, tmp_path, bench):
    code, out = bench("record", "--tasks", TASK, "--output", str(tmp_path / "ds"), *args)
    assert code == 2 and message in out and not (tmp_path / "ds").exists()


def test_without_lerobot_datasets_the_recording_is_refused_before_it_starts(tmp_path):
    """lerobot.datasets does not import without PyAV (seen on a machine that lacked it): one line, exit 2, nothing
    written, instead of a traceback after the first episode."""
    blocked = ("import sys; sys.modules['lerobot.datasets.compute_stats'] = None; from bench.cli import main; "
               f"sys.exit(main(['record', '--layout', 'pi05', '--tasks', '{TASK}', '--output', sys.argv[1]]))")
    result = subprocess.run([sys.executable, "-c", blocked, str(tmp_path / "ds")], capture_output=True, text=True)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, lines
    assert "needs lerobot.datasets" in lines[0] and "pip install" in lines[0] and not (tmp_path / "ds").exists()


def test_existing_output_is_refused_unless_resumed(tmp_path, bench):
    (tmp_path / "ds").mkdir()
    code, out = bench("record", "--layout", "pi05", "--output", str(tmp_path / "ds"))
    assert code == 2 and "already exists" in out and "--resume" in out
