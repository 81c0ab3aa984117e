"""`bench run --policy remote-libero` end to end against a loopback openpi-protocol server."""

import numpy as np
import pytest

from bench.results import read_episodes

from conftest import read_manifest, run_dir_of
from test_remote import openpi_like_server

INSTRUCTION = "Grasp a red cube and move it to a target goal position."


@pytest.mark.timeout(600)
def test_remote_policy_runs_episodes_against_a_policy_server(bench, tmp_path, short_tasks):
    seen = []

    def policy(obs: dict) -> dict:
        seen.append({k: (np.asarray(v).shape, np.asarray(v).dtype) if k != "prompt" else v for k, v in obs.items()})
        return {"actions": np.zeros((50, 32), np.float32)}  # padded like a Pi server's output

    with openpi_like_server(policy) as peer:
        code, text = bench("run", "--policy", "remote-libero", "--server", peer.url, "--tasks", "PickCube-v1",
                           "--episodes", "2", "--num-envs", "2", "--replan-steps", "10", "--output", str(tmp_path),
                           "--tasks-dir", str(short_tasks))
    assert code == 0, text
    run = run_dir_of(tmp_path)
    assert len(read_episodes(run)) == 2
    assert len(seen) == 2 * 50 // 10  # one request per slot per 10 executed actions (50-step budget)
    assert seen[0] == {"observation/image": ((224, 224, 3), np.uint8), "observation/wrist_image": ((224, 224, 3), np.uint8),
                       "observation/state": ((8,), np.float32), "prompt": INSTRUCTION}
    manifest = read_manifest(run)
    assert manifest["policy"]["params"]["server"] == peer.url
    assert manifest["policy"]["describe"]["server_metadata"] == {"action_horizon": 10, "robot": "panda"}


def test_unreachable_server_is_one_clear_error_before_any_episode(bench, tmp_path):
    code, text = bench("run", "--policy", "remote-libero", "--server", "ws://127.0.0.1:9", "--tasks", "PickCube-v1",
                       "--output", str(tmp_path / "out"))
    assert code == 2
    assert "ws://127.0.0.1:9" in text and "serve_policy.py" in text
    assert not (tmp_path / "out").exists()
