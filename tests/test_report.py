"""Tables of episode records: the per-run task table and the leaderboard's wide form."""

import math

import pandas as pd
import pytest

from bench.report import leaderboard_display, task_table
from bench.stats import wilson_interval

from test_stats import wilson_by_hand


def test_task_table_rates_intervals_and_steps_to_success():
    episodes = pd.DataFrame({
        "task": ["A"] * 4 + ["B"] * 2,
        "success_once": [True, True, False, True, False, False],
        "success_at_end": [True, False, False, True, False, False],
        "first_success_step": [10, 20, -1, 30, -1, -1],
        "return": [1.0, 2.0, 3.0, 4.0, 0.0, 0.0],
    })
    table = task_table(episodes).set_index("task")
    assert table.loc["A", "success_once"] == 0.75
    assert table.loc["A", "success_at_end"] == 0.5
    assert table.loc["A", "mean_steps_to_success"] == 20.0
    assert (table.loc["A", "ci_low"], table.loc["A", "ci_high"]) == pytest.approx(wilson_by_hand(3, 4))
    assert math.isnan(table.loc["B", "mean_steps_to_success"])
    assert table.loc["mean", "success_once"] == pytest.approx(0.375)


def test_leaderboard_display_is_policy_by_task():
    board = pd.DataFrame({"policy": ["p", "p", "q"], "task": ["A", "B", "A"], "episodes": [10, 10, 10],
                          "errors": [0, 0, 2], "success_once": [0.5, 1.0, 0.0], "ci_low": [0.2, 0.7, 0.0], "ci_high": [0.8, 1.0, 0.3],
                          "success_at_end": [0.5, 1.0, 0.0]})
    wide = leaderboard_display(board).set_index("policy")
    assert wide.loc["p", "A"] == "50.0% [20.0, 80.0] n=10"
    assert wide.loc["q", "B"] == "-"
    assert wide.loc["q", "A"] == "0.0% [0.0, 30.0] n=10 errors=2"
    assert wide.loc["p", "mean"] == "75.0%"


def test_errors_are_neither_successes_nor_failures():
    episodes = pd.DataFrame({"task": ["A"] * 4, "status": ["ok", "ok", "error", "error"],
                             "success_once": [True, False, False, False], "success_at_end": [True, False, False, False],
                             "first_success_step": [5, -1, -1, -1], "return": [1.0, 0.0, 0.0, 0.0]})
    row = task_table(episodes).iloc[0]
    assert (row["episodes"], row["errors"], row["success_once"]) == (2, 2, 0.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(1, 2))
