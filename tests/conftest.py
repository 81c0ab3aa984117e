"""Shared fixtures. Tests run real ManiSkill environments on CPU (lavapipe rendering): no simulator mocks."""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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


class Background:
    """A command run in a process of its own (a new session), its output in a log file, for work that tests wait
    for later (`_started_early`): a recording or a run made while other tests run. `output`: what it writes.
    `after`: another Background that must succeed first (this one starts when it has)."""

    def __init__(self, command: list[str], log: Path, output: Path, after: Background | None = None, **popen):
        self.command, self.log, self.output, self.after = command, log, output, after
        self.process: subprocess.Popen | None = None
        self._stopped = False
        self._starter = threading.Thread(target=self._start, args=(popen,), daemon=True)
        self._starter.start()

    def _start(self, popen: dict) -> None:
        if self.after is not None and self.after.wait() != 0:
            return
        with self.log.open("w") as out:
            if not self._stopped:
                self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True, **popen)

    def wait(self) -> int | None:
        """The exit code once the process has ended; None if it never started (what it waited for failed)."""
        self._starter.join()
        return None if self.process is None else self.process.wait()

    def result(self) -> Path:
        """Waits for the process; `output` if it succeeded, else the test fails with the end of its log."""
        code = self.wait()
        if code is None:
            pytest.fail(f"{' '.join(self.command)} did not start: {' '.join(self.after.command)} failed", pytrace=False)
        if code != 0:
            pytest.fail(f"{' '.join(self.command)} exited {code}:\n{self.log.read_text()[-4000:]}", pytrace=False)
        return self.output

    def stop(self) -> None:
        self._stopped = True
        if self.after is not None:
            self.after.stop()
        self._starter.join()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# The expert recordings of conftest's fixtures: (task, episodes)
RECORDINGS = {"pushcube_recording": ("PushCube-v1", 3), "pickcube_recording": ("PickCube-v1", 6)}


def _starts_early(item) -> bool:
    return hasattr(getattr(item, "module", None), "start_early")


def pytest_collection_modifyitems(items):
    """The tests of a module that starts work in another process before the first test (`start_early`, below) run
    after the others, which run while that process works; the order is otherwise kept."""
    items.sort(key=_starts_early)


@pytest.fixture(scope="session", autouse=True)
def _started_early(request, tmp_path_factory) -> dict[str, Background]:
    """Before the first test, in processes of their own (the tests keep about one core of two busy on the CI
    machine): the RECORDINGS that collected tests need, then what `start_early(request, started)` of each collected
    module that has one adds (tests/openpi/test_record_openpi.py's recording in the main environment,
    tests/test_trained.py's runs on these recordings). Fixtures and tests wait for what they need; what still runs
    at the end is killed."""
    items = request.session.items
    started = {}
    for name, (task, episodes) in RECORDINGS.items():
        if any(name in getattr(item, "fixturenames", ()) for item in items):
            started[name] = _expert_recording(task, episodes, request.getfixturevalue("short_tasks"),
                                              tmp_path_factory)
    modules = {item.module.__name__: item.module for item in items if _starts_early(item)}
    for name in sorted(modules):
        started.update(modules[name].start_early(request, started))
    yield started
    for background in started.values():
        background.stop()


def _expert_recording(task: str, episodes: int, short_tasks: Path, tmp_path_factory) -> Background:
    """`bench record`'s expert on the first `episodes` recording episodes of `task` (recording seed 0: the first
    episodes of the training data of benchmarks/trained), pi05 layout, LeRobot v2.1 with PNG frames (no conversion,
    no video), ending 1 frame after success; started in the background."""
    folder = tmp_path_factory.mktemp(f"{task}-recording")
    return Background([sys.executable, "-m", "bench.cli", "record", "--layout", "pi05", "--tasks", task, "--episodes",
                       str(episodes), "--format", "v2.1", "--no-video", "--end-after-success", "1", "--tasks-dir",
                       str(short_tasks), "--output", str(folder / "ds"), "--num-envs", "2"],
                      folder / "record.log", folder / "ds")


def _recording(started: dict[str, Background], name: str) -> Path:
    require("datasets", "bench record writes LeRobot datasets: pip install -e '.[lerobot]'")
    return started[name].result()


@pytest.fixture(scope="session")
def pushcube_recording(_started_early) -> Path:
    """The first 3 recorded PushCube episodes: one recording for every test that needs recorded episodes."""
    return _recording(_started_early, "pushcube_recording")


@pytest.fixture(scope="session")
def pickcube_recording(_started_early) -> Path:
    """The first 6 recorded PickCube episodes (tests/test_trained.py)."""
    return _recording(_started_early, "pickcube_recording")


__all__ = ["Background", "assert_same_results", "episodes_without_timing", "read_manifest", "require", "run_dir_of"]
