"""The benchmarks' --quick modes (CPU, about a minute each) still run and print their tables."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("script, row", [
    ("env_throughput.py", "| cpu | 2 |"),
    ("pi_throughput.py", "| pi05 | bench | 2 |"),
    ("end_to_end.py", "| bench run | 2 |"),
])
def test_quick_mode(script, row):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    assert row in result.stdout, result.stdout
