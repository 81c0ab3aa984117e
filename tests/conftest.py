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
import time
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
    for later (`_started_early`): a recording made while other tests run. `output`: what it writes."""

    def __init__(self, command: list[str], log: Path, output: Path, **popen):
        self.command, self.log, self.output = command, log, output
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            **popen)

    def result(self) -> Path:
        """Waits for the process; `output` if it succeeded, else the test fails with the end of its log."""
        if self.process.wait() != 0:
            pytest.fail(f"{' '.join(self.command)} exited {self.process.returncode}:\n{self.log.read_text()[-4000:]}",
                        pytrace=False)
        return self.output

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


STEPS = """
import json, sys, traceback
from pathlib import Path
from bench.cli import main
folder = Path(sys.argv[2])
for name, args in json.loads(sys.argv[1]):
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Exception:
        traceback.print_exc()
        code = 1
    print(f"=== {name}: exit code {code}", flush=True)
    (folder / f".{name}.code").write_text(str(code))
    (folder / f".{name}.code").rename(folder / f"{name}.code")
"""


class BenchSteps:
    """`bench` commands run one after the other, as the `bench` fixture runs them, in one Python process of the main
    environment of their own (one import of bench, lerobot and ManiSkill and one forkserver for the env workers,
    not one per command), started before the first test (`_started_early`): a recording of conftest's, then
    tests/test_trained.py's runs on it. `result(name)` waits for one command."""

    def __init__(self, folder: Path):
        self.folder, self.steps, self.outputs = folder, [], {}
        self.log = folder / "steps.log"
        self.process: subprocess.Popen | None = None

    def add(self, name: str, args: list[str], output: Path) -> None:
        self.steps.append((name, args))
        self.outputs[name] = output

    def start(self) -> None:
        with self.log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-c", STEPS, json.dumps(self.steps), str(self.folder)],
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def result(self, name: str) -> Path:
        """Waits for command `name`; its output if it exited 0, else the test fails with the end of the log."""
        done = self.folder / f"{name}.code"
        while not done.is_file() and self.process.poll() is None:
            time.sleep(0.2)
        code = int(done.read_text()) if done.is_file() else f"nothing (the process ended, {self.process.returncode})"
        if code != 0:
            pytest.fail(f"bench {' '.join(dict(self.steps)[name])} exited {code}:\n{self.log.read_text()[-4000:]}",
                        pytrace=False)
        return self.outputs[name]

    def wait(self) -> None:
        """Until every command has run: before a test moves the recording they read."""
        self.process.wait()

    def stop(self) -> None:
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
def _started_early(request, tmp_path_factory) -> dict:
    """Before the first test, in processes of their own (the tests keep about one core of two busy on the CI
    machine): each of the RECORDINGS that collected tests need (a BenchSteps), with what `start_early(request,
    started)` of each collected module that has one adds to them (tests/test_trained.py's runs) or returns
    (tests/openpi/test_record_openpi.py's recording in the main environment, a Background). Fixtures and tests wait
    for what they need; what still runs at the end is killed."""
    items = request.session.items
    started = {}
    for name, (task, episodes) in RECORDINGS.items():
        if any(name in getattr(item, "fixturenames", ()) for item in items):
            started[name] = BenchSteps(tmp_path_factory.mktemp(name))
            output = started[name].folder / "ds"
            started[name].add(name, _expert_recording(task, episodes, request.getfixturevalue("short_tasks"), output),
                              output)
    modules = {item.module.__name__: item.module for item in items if _starts_early(item)}
    for name in sorted(modules):
        started.update(modules[name].start_early(request, started))
    for steps in started.values():
        if isinstance(steps, BenchSteps):
            steps.start()
    yield started
    for background in started.values():
        background.stop()


def _expert_recording(task: str, episodes: int, short_tasks: Path, output: Path) -> list[str]:
    """`bench record`'s expert on the first `episodes` recording episodes of `task` (recording seed 0: the first
    episodes of the training data of benchmarks/trained), pi05 layout, LeRobot v2.1 with PNG frames (no conversion,
    no video), ending 1 frame after success. One env worker: on the 2-core CI machine the tests keep both cores busy,
    and a second worker would add its start-up (~8 s of CPU: the scene, lavapipe's shaders) without finishing sooner."""
    return ["record", "--layout", "pi05", "--tasks", task, "--episodes", str(episodes), "--format", "v2.1",
            "--no-video", "--end-after-success", "1", "--tasks-dir", str(short_tasks), "--output", str(output),
            "--num-envs", "1"]


def _recording(started: dict, name: str) -> Path:
    require("datasets", "bench record writes LeRobot datasets: pip install -e '.[lerobot]'")
    return started[name].result(name)


@pytest.fixture(scope="session")
def pushcube_recording(_started_early) -> Path:
    """The first 3 recorded PushCube episodes: one recording for every test that needs recorded episodes."""
    return _recording(_started_early, "pushcube_recording")


@pytest.fixture(scope="session")
def pickcube_recording(_started_early) -> Path:
    """The first 6 recorded PickCube episodes (tests/test_trained.py)."""
    return _recording(_started_early, "pickcube_recording")


__all__ = ["Background", "BenchSteps", "assert_same_results", "episodes_without_timing", "read_manifest", "require", "run_dir_of"]
