"""A `bench record --keys openpi` dataset (LeRobot v2.1) read by openpi's own training data loader
(`openpi.training.data_loader.create_torch_dataset`, on PyPI lerobot 0.3.3 as scripts/setup-openpi-env.sh installs
it), and bench's norm_stats.json held against openpi's `RunningStats` fed by that loader.

Images are stored as PNG (--no-video), as openpi's LIBERO dataset does: lerobot 0.3.3 decodes video with
torchvision.io.VideoReader (gone from the torchvision that matches this venv's torch 2.11) or torchcodec (not
installed here), so its video path cannot run in this environment.

The recording itself runs in the main environment (.venv: lerobot 0.6.1 computes LeRobot's episode stats), as a
subprocess: `BENCH_RECORD_PYTHON` (default .venv/bin/python) with `BENCH_RECORD_PYTHONPATH` if set. It starts before
the session's first test and these tests run last (`start_early`, tests/conftest.py), so that the other tests run
while it records.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import Background, require

require("openpi.training.data_loader", "needs the openpi environment: scripts/setup-openpi-env.sh")
require("lerobot.datasets.lerobot_dataset", "openpi's loader reads LeRobot v2.1 through lerobot 0.3.3: "
        "scripts/setup-openpi-env.sh installs it")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from openpi.shared import normalize as openpi_normalize  # noqa: E402
from openpi.training import config as openpi_config  # noqa: E402
from openpi.training import data_loader as openpi_data_loader  # noqa: E402

from bench.datasets.read import open_dataset  # noqa: E402
from bench.datasets.stats import action_chunks  # noqa: E402

REPO = Path(__file__).parents[2]
HORIZON = 10  # openpi's pi05_libero action horizon
RECORD_PYTHON = Path(os.environ.get("BENCH_RECORD_PYTHON", REPO / ".venv" / "bin" / "python"))


def start_early(request, started) -> dict[str, Background]:
    """The recording, started before the session's first test in a process of its own (tests/conftest.py calls
    this and runs this module's tests after the others, which run while it records). One env worker: a second would
    add its start-up to the 2-core machine's busy cores without finishing sooner."""
    if not RECORD_PYTHON.is_file():
        return {}  # `recorded` says so
    tmp_path_factory = request.getfixturevalue("tmp_path_factory")
    tasks = tmp_path_factory.mktemp("tasks")
    for path in (REPO / "tasks").glob("*.toml"):  # a 50-step PushCube, as tests/conftest.py's short_tasks
        (tasks / path.name).write_text(path.read_text().replace("max_steps = 100", "max_steps = 50"))
    output = tmp_path_factory.mktemp("lerobot_home") / "bench_openpi"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("BENCH_RECORD_PYTHONPATH")) if p)
    command = [str(RECORD_PYTHON), "-m", "bench.cli", "record", "--layout", "pi05", "--keys", "openpi", "--tasks",
               "PushCube-v1", "--episodes", "2", "--num-envs", "1", "--end-after-success", "5", "--action-horizon",
               str(HORIZON), "--no-video", "--tasks-dir", str(tasks), "--output", str(output)]
    return {__name__: Background(command, tmp_path_factory.mktemp("record_log") / "record.log", output, env=env,
                                 cwd=REPO)}


@pytest.fixture(scope="module")
def recorded(_started_early) -> Path:
    """The dataset start_early's `bench record` wrote, once it has finished."""
    if not RECORD_PYTHON.is_file():
        pytest.fail(f"no main environment at {RECORD_PYTHON} to record with: make setup (or set BENCH_RECORD_PYTHON)")
    return _started_early[__name__].result()


@pytest.fixture(scope="module")
def openpi_dataset(recorded):
    """openpi's torch dataset of the recording, as a LIBERO-style TrainConfig builds it (repo_id under
    $HF_LEROBOT_HOME, actions chunked by delta_timestamps, the prompt from the frame's task)."""
    import lerobot.datasets.lerobot_dataset as lerobot_dataset

    home = lerobot_dataset.HF_LEROBOT_HOME
    lerobot_dataset.HF_LEROBOT_HOME = recorded.parent  # what HF_LEROBOT_HOME=... does before lerobot is imported
    try:
        data_config = openpi_config.DataConfig(repo_id=recorded.name, action_sequence_keys=("actions",),
                                               prompt_from_task=True)
        model = openpi_config.get_config("pi05_libero").model
        yield openpi_data_loader.create_torch_dataset(data_config, HORIZON, model)
    finally:
        lerobot_dataset.HF_LEROBOT_HOME = home


def test_openpi_loader_reads_the_v21_dataset_bench_wrote(recorded, openpi_dataset):
    ds = open_dataset(recorded)
    assert ds.version == "v2.1" and ds.keys == {"base_0_rgb": "image", "left_wrist_0_rgb": "wrist_image",
                                                "state": "state", "actions": "actions"}
    assert len(openpi_dataset) == sum(e["length"] for e in ds.episodes)
    frames = ds.frames(0)
    item = openpi_dataset[0]
    assert item["prompt"] == ds.episodes[0]["task"]
    np.testing.assert_array_equal(np.asarray(item["state"]), frames["state"][0])
    np.testing.assert_array_equal(np.asarray(item["actions"]), action_chunks(frames["actions"], HORIZON)[0])
    image = (np.asarray(item["image"]).transpose(1, 2, 0) * 255).round().astype(int)  # lerobot: float CHW
    np.testing.assert_array_equal(image, frames["image"][0])  # PNG in the parquet: exact
    last = ds.episodes[0]["length"] - 1  # past the episode's end the last action repeats
    np.testing.assert_array_equal(np.asarray(openpi_dataset[last]["actions"]),
                                  np.repeat(frames["actions"][-1:], HORIZON, axis=0))


def test_norm_stats_equal_openpis_running_stats_over_its_loader(recorded, openpi_dataset):
    """compute_norm_stats.py's loop: batches of 32 in order (the last partial one dropped), state and action chunks
    into openpi.shared.normalize.RunningStats."""
    stats = {"state": openpi_normalize.RunningStats(), "actions": openpi_normalize.RunningStats()}
    batch = 32
    for start in range(0, len(openpi_dataset) // batch * batch, batch):
        items = [openpi_dataset[i] for i in range(start, start + batch)]
        for key in stats:
            stats[key].update(np.stack([np.asarray(item[key]) for item in items]))
    bench = open_dataset(recorded).norm_stats()["norm_stats"]
    for key, running in stats.items():
        expected = running.get_statistics()
        for name in ("mean", "std", "q01", "q99"):
            np.testing.assert_allclose(bench[key][name], getattr(expected, name), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{key}.{name}")
