"""Shared fixtures. Tests run real ManiSkill environments on CPU (lavapipe rendering): no simulator mocks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.results import read_episodes, read_manifest

TIMING_COLUMNS = ["wall_time_s", "sim_time_s", "policy_time_s", "run_id"]


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
    return read_episodes(run).drop(columns=TIMING_COLUMNS).sort_values(["task", "episode"]).reset_index(drop=True)


__all__ = ["episodes_without_timing", "read_manifest", "run_dir_of"]
