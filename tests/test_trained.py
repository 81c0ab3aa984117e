"""The committed small Pi0 and Pi0.5 (benchmarks/trained, docs/trained-policies.md), trained from scratch on expert
data `bench record` wrote, scored through `bench run --episodes-from` on recorded PushCube episodes on CPU
(lavapipe). Measured on the first six: Pi0 6/6, Pi0.5 5/6; on the first three, which this test runs, 3/3 each, so
it asks for 2 of 3. The random policy succeeds on 1 of 32 such episodes: a regression in an
adapter, a normalization, Pi0.5's state prompt, the tokenization, chunking or the action mapping fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.results import read_episodes
from conftest import require

TRAINED = Path(__file__).resolve().parents[1] / "benchmarks" / "trained"


@pytest.mark.parametrize("model", ["pi0", "pi05"])
def test_trained_small_pi_reproduces_recorded_pushcube_episodes(model, pushcube_recording, short_tasks, bench,
                                                                tmp_path):
    require("lerobot.policies.pi05", "the trained checkpoints are lerobot models: pip install -e '.[lerobot]'")
    code, out = bench("run", "--policy", str(TRAINED / "presets" / f"{model}-small.toml"),
                      "--checkpoint", str(TRAINED / "checkpoints" / f"{model}-small"),
                      "--tokenizer", str(TRAINED / "checkpoints" / "tokenizer.model"),
                      "--episodes-from", str(pushcube_recording), "--tasks-dir", str(short_tasks),
                      "--num-envs", "2", "--output", str(tmp_path), "--run-id", model)
    assert code == 0, out
    episodes = read_episodes(tmp_path / model)
    assert len(episodes) == 3 and (episodes["status"] == "ok").all()
    assert episodes["success_once"].sum() >= 2, episodes[["episode", "seed", "success_once"]]
