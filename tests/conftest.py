"""Shared fixtures. Tests run real ManiSkill environments on CPU (lavapipe rendering): no simulator mocks."""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _share_bytecode() -> None:
    """Python processes the tests start (`bench record` subprocesses, the env workers' forkserver, scripts) reuse
    the bytecode this session compiles. Where PYTHONDONTWRITEBYTECODE is set (it is on the 2-core machine the
    README's test times come from) and the venvs hold no .pyc files (uv does not compile them), each of those
    processes would otherwise compile torch, lerobot and ManiSkill from source again: ~8 of the ~16 s that importing
    bench.cli, lerobot.datasets and mani_skill.envs takes there. The cache is this session's own folder, removed at
    exit: nothing is written into the venvs or the repository."""
    if os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    folder = tempfile.mkdtemp(prefix="bench-tests-pycache-")
    session = os.getpid()
    atexit.register(lambda: os.getpid() == session and shutil.rmtree(folder, ignore_errors=True))
    os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix = folder
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


_share_bytecode()  # before the imports below, so that they are cached too

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bench.cli import main  # noqa: E402
from bench.results import RUN_COLUMNS, read_episodes, read_manifest, same_episode_results  # noqa: E402
from bench.tasks import DEFAULT_TASKS_DIR  # noqa: E402

TIMING_COLUMNS = list(RUN_COLUMNS)  # the columns that may differ between runs of the same episodes (bench.results)


@pytest.fixture
def bench(capsys):
    """Runs the CLI in-process; returns (exit code, stdout+stderr)."""

    def call(*args: str) -> tuple[int, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out + out.err

    return call


def run_dir_of(output: Path) -> Path:
    (run,) = [p for p in output.iterdir() if p.is_dir()]
    return run


def episodes_without_timing(run: Path) -> pd.DataFrame:
    """A run's records without the columns that may differ between runs of the same episodes, by task and episode."""
    episodes = read_episodes(run)
    return (episodes.drop(columns=[c for c in RUN_COLUMNS if c in episodes])
            .sort_values(["task", "episode"]).reset_index(drop=True))


def assert_same_results(a: Path, b: Path) -> None:
    """Two run folders hold the same results for the same episodes (`bench.results.same_episode_results`)."""
    differences = same_episode_results(read_episodes(a), read_episodes(b))
    assert not differences, "\n".join(differences[:20])


SHORT_BUDGET = 50  # steps: the scripted expert solves PickCube in about 28


@pytest.fixture(scope="session")
def short_tasks(tmp_path_factory) -> Path:
    """A copy of tasks/ where PickCube-v1 and PushCube-v1 have a 50-step budget: for tests about the harness
    (resume, faults, comparisons, adapters), not about the tasks, so they pay for fewer simulated steps."""
    tasks = tmp_path_factory.mktemp("tasks") / "tasks"
    shutil.copytree(DEFAULT_TASKS_DIR, tasks)
    for task in ("PickCube-v1", "PushCube-v1"):
        spec = tasks / f"{task}.toml"
        text = spec.read_text()
        assert "max_steps = 100" in text
        spec.write_text(text.replace("max_steps = 100", f"max_steps = {SHORT_BUDGET}"))
    return tasks


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory) -> Path:
    """A tiny SentencePiece model trained in milliseconds, laid out like PaliGemma's (bos/eos/pad, byte fallback)."""
    from bench.policies.pi_tiny import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture
def norm_stats(tmp_path) -> Path:
    from bench.policies.pi_tiny import neutral_norm_stats

    path = tmp_path / "norm_stats.json"
    path.write_text(json.dumps(neutral_norm_stats(state_dim=8, action_dim=7)))
    return path


def require(module: str, why: str):
    """`pytest.importorskip(module)`, except under CI=true: there what the test's environment must have (lerobot
    and ray in .venv, openpi in .venv-openpi) failing to import is a failure, not a skip."""
    if os.environ.get("CI") != "true":
        return pytest.importorskip(module, reason=why)
    try:
        return importlib.import_module(module)
    except ImportError as e:
        error = e
    pytest.fail(f"CI=true and {module} is not importable ({error}): {why}", pytrace=False)


def _expert_recording(task: str, episodes: int, short_tasks: Path, tmp_path_factory) -> Path:
    """`bench record`'s expert on the first `episodes` recording episodes of `task` (recording seed 0: the first
    episodes of the training data of benchmarks/trained), pi05 layout, LeRobot v2.1 with PNG frames (no conversion,
    no video), ending 1 frame after success."""
    require("datasets", "bench record writes LeRobot datasets: pip install -e '.[lerobot]'")
    output = tmp_path_factory.mktemp(f"{task}-recording") / "ds"
    assert main(["record", "--layout", "pi05", "--tasks", task, "--episodes", str(episodes), "--format", "v2.1",
                 "--no-video", "--end-after-success", "1", "--tasks-dir", str(short_tasks), "--output", str(output),
                 "--num-envs", "2"]) == 0
    return output


@pytest.fixture(scope="session")
def pushcube_recording(short_tasks, tmp_path_factory) -> Path:
    """The first 3 recorded PushCube episodes: one recording for every test that needs recorded episodes."""
    return _expert_recording("PushCube-v1", 3, short_tasks, tmp_path_factory)


@pytest.fixture(scope="session")
def pickcube_recording(short_tasks, tmp_path_factory) -> Path:
    """The first 6 recorded PickCube episodes (tests/test_trained.py)."""
    return _expert_recording("PickCube-v1", 6, short_tasks, tmp_path_factory)


__all__ = ["assert_same_results", "episodes_without_timing", "read_manifest", "require", "run_dir_of"]
