"""`bench check`: each check flags a seeded mismatch and passes a consistent setup. Pure parts (verdicts, norm stat
tolerances, layout inversion) are tested on arrays; the rest on real ManiSkill envs, tiny lerobot Pi models and a
dataset recorded by `bench record`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.adapters import STATE_LAYOUTS
from bench.check import findings, normstats, replay
from bench.policies.pi_normalize import Normalizer
from bench.tasks import load_suite

from conftest import require

LEROBOT = "needs lerobot[pi]==0.6.1: pip install -e '.[lerobot]'"
PRESETS = Path(__file__).parents[1] / "policies"


# --- pure functions ------------------------------------------------------------------------------------------------

def test_replay_verdict_needs_the_policy_to_beat_the_mean_action():
    assert replay.replay_verdict(0.10, 0.10) == findings.FAIL  # no better than the mean action
    assert replay.replay_verdict(0.20, 0.10) == findings.FAIL
    assert replay.replay_verdict(0.07, 0.10) == findings.WARN  # explains 30% of the spread
    assert replay.replay_verdict(0.02, 0.10) == findings.OK
    assert replay.replay_verdict(0.0, 0.0) == findings.OK and replay.replay_verdict(0.1, 0.0) == findings.FAIL


def test_replay_findings_score_chunks_against_recorded_actions_and_the_mean():
    rng = np.random.default_rng(0)
    task = load_suite().tasks["PushCube-v1"]
    actions = [rng.uniform(-1, 1, (30, 7)).astype(np.float32) for _ in range(2)]
    picks = [(0, 0), (0, 25), (1, 10)]
    frames = [replay.ReplayFrame(task, e, 0, {}, {}, actions[e][t:]) for e, t in picks]
    mean = np.concatenate(actions).mean(0)
    exact = np.stack([np.concatenate([actions[e][t:t + 10], np.zeros((max(0, t + 10 - 30), 7))])[:10]
                      for e, t in picks])
    first, chunk = replay.replay_findings(exact, frames, mean)
    assert first.verdict == chunk.verdict == findings.OK
    assert chunk.data["policy"]["pairs"] == 10 + 5 + 10  # only chunk steps with a recorded action count
    noisy = np.broadcast_to(mean, exact.shape) + rng.normal(0, 0.3, exact.shape)
    assert all(f.verdict == findings.FAIL for f in replay.replay_findings(noisy, frames, mean))


def test_frames_spread_over_episodes():
    picks = replay.select_frames([10, 30, 5], 4)
    assert picks == [(0, 0), (1, 5), (1, 19), (2, 4)]  # global frames 0, 15, 29, 44
    assert replay.select_frames([3], 10) == [(0, 0), (0, 1), (0, 2)]


@pytest.mark.parametrize("layout", ["qpos", "qpos8", "tcp_pos_quat_gripper", "tcp_pos_axisangle_fingers"])
def test_a_layout_inverted_gives_back_its_state(layout):
    rng = np.random.default_rng(1)
    quat = rng.normal(size=(5, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    obs = {"agent/qpos": rng.normal(size=(5, 9)).astype(np.float32),
           "extra/tcp_pose": np.concatenate([rng.normal(size=(5, 3)), quat], axis=1).astype(np.float32)}
    state = STATE_LAYOUTS[layout](obs).astype(np.float32)
    raw = replay.raw_from_state(state, layout)
    np.testing.assert_allclose(STATE_LAYOUTS[layout](raw), state, atol=1e-5)
    readable = {other: replay.readable(other, raw) for other in STATE_LAYOUTS}
    assert readable[layout] and (readable["qpos8"] if layout == "qpos" else True)
    assert not readable["qpos"] or layout == "qpos"  # what a layout drops is NaN, never made up


def test_norm_stats_tolerance_is_in_dataset_stds():
    rng = np.random.default_rng(2)
    values = rng.normal([0.0, 1.0, 5.0], [1.0, 0.1, 0.0], size=(2000, 3))
    data = normstats.dataset_stats(values)
    same = Normalizer.from_stats({k: v.tolist() for k, v in data.items()}, use_quantiles=True)
    assert normstats.compare("state", same, values, exact_width=True).verdict == findings.OK
    shifted = {**data, "q99": data["q99"] + np.array([0.0, 0.03, 0.0])}  # 0.3 std of dim 1
    found = normstats.compare("state", Normalizer.from_stats(shifted, use_quantiles=True), values, exact_width=True)
    assert found.verdict == findings.WARN and "worst dim 1 q99" in found.detail
    neutral = Normalizer.from_stats({"mean": [0] * 3, "std": [1] * 3, "q01": [-1] * 3, "q99": [1] * 3}, True)
    found = normstats.compare("state", neutral, values, exact_width=True)
    assert found.verdict == findings.FAIL and found.fix
    mean_std = Normalizer.from_stats({**data, "q99": data["q99"] + 10}, use_quantiles=False)  # q99 is not used
    assert normstats.compare("state", mean_std, values, exact_width=True).verdict == findings.OK
    wide = Normalizer.from_stats({k: np.pad(v, (0, 29)).tolist() for k, v in data.items()}, use_quantiles=True)
    assert normstats.compare("actions", wide, values, exact_width=False).verdict == findings.OK  # padded to 32
    assert normstats.compare("state", wide, values, exact_width=True).verdict == findings.FAIL
