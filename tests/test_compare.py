"""`bench compare` on written run folders (its statistics: tests/test_stats.py), contract checks, and a real
expert-vs-random comparison; `bench run --repeat`: the noise floor."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report import spread_table
from bench.results import RunWriter, read_episodes, read_manifest

from test_stats import wilson_by_hand

CONTRACT = {"evaluation": {"suite_version": "v1", "seed": 0, "replan_steps": 5, "sim_backend": "cpu",
                           "mani_skill": "3.0.1", "sapien": "3.0.3"},
            "tasks": {"T1": {"max_steps": 100}, "T2": {"max_steps": 100}},
            "policy": {"preset": "p"}}


def write_run(root: Path, name: str, outcomes: dict[str, list[bool]], contract: dict | None = CONTRACT,
              seed_offset: int = 0, status: dict[tuple[str, int], str] | None = None) -> Path:
    """A run folder with the given success_once per (task, episode); seeds as a real run of one run seed."""
    manifest = {"run_id": name, "policy": {"name": name}}
    if contract is not None:
        manifest["contract"] = contract
    writer = RunWriter(root / name, manifest)
    for task, successes in outcomes.items():
        for i, success in enumerate(successes):
            record = {"task": task, "episode": i, "seed": 1000 * i + len(task) + seed_offset, "success_once": success,
                      "success_at_end": success, "first_success_step": 10 if success else -1, "return": 0.0}
            if status is not None:
                record["status"] = status.get((task, i), "ok")
            writer.append(record)
    writer.finish("completed")
    return root / name


def pairs(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[bool], list[bool]]:
    """A's and B's outcomes for a paired table."""
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return a, b


# --- the noise floor --------------------------------------------------------------------------------------


def test_spread_of_repeats_by_hand():
    runs = [pd.DataFrame({"task": ["T"] * 2, "success_once": s}) for s in ([True, False], [True, True], [False, False])]
    row = spread_table(runs).iloc[0]
    assert row["rates"] == [0.5, 1.0, 0.0]
    assert (row["mean"], row["std"], row["min"], row["max"]) == pytest.approx((0.5, 0.5, 0.0, 1.0))


# --- bench compare on written run folders ---------------------------------------------------------------


def test_compare_rows_verdicts_and_outputs(bench, tmp_path):
    a1, b1 = pairs(0, 1, 9, 0)  # T1: B better, p = 22/1024
    a2, b2 = pairs(5, 2, 2, 1)  # T2: 7/10 each
    a = write_run(tmp_path, "a", {"T1": a1, "T2": a2})
    b = write_run(tmp_path, "b", {"T1": b1, "T2": b2})
    code, text = bench("compare", str(a), str(b), "--json", str(tmp_path / "c.json"),
                       "--markdown", str(tmp_path / "c.md"))
    assert code == 0, text
    rows = {r["task"]: r for r in json.loads((tmp_path / "c.json").read_text())["tasks"]}
    assert rows["T1"]["mcnemar_p"] == pytest.approx(22 / 1024)
    assert (rows["T1"]["a_only"], rows["T1"]["b_only"], rows["T1"]["diff"]) == (1, 9, pytest.approx(0.8))
    assert rows["T1"]["verdict"] == "better"
    assert (rows["T2"]["a_low"], rows["T2"]["a_high"]) == pytest.approx(wilson_by_hand(7, 10))
    assert (rows["T2"]["b_low"], rows["T2"]["b_high"]) == pytest.approx(wilson_by_hand(7, 10))
    assert rows["T2"]["mcnemar_p"] == 1.0 and rows["T2"]["verdict"] == "no detectable difference"
    assert rows["T2"]["episodes_needed"] is None
    # the mean over tasks: MOVER, mean -+ sqrt(sum of squared half-widths) / 2
    mean = rows["mean"]
    assert mean["diff"] == pytest.approx(0.4)
    below = math.sqrt((0.8 - rows["T1"]["diff_low"]) ** 2 + (0 - rows["T2"]["diff_low"]) ** 2) / 2
    assert mean["diff_low"] == pytest.approx(0.4 - below)
    assert mean["verdict"] == "better"
    assert "+80.0 [" in text and "1/9" in text and "0.02148" in text
    assert "| T1 |" in (tmp_path / "c.md").read_text()
    # the reverse is a regression: exit code 1; a margin above the difference makes it no detectable difference
    code, text = bench("compare", str(b), str(a))
    assert code == 1 and "worse" in text
    code, text = bench("compare", str(b), str(a), "--margin", "0.85")
    assert code == 0 and "worse" not in text


def test_common_episodes_are_paired_and_bad_status_is_left_out(bench, tmp_path):
    a = write_run(tmp_path, "a", {"T1": [True] * 8}, status={("T1", 0): "error"})
    b = write_run(tmp_path, "b", {"T1": [False] * 10, "T2": [True]})
    code, text = bench("compare", str(a), str(b), "--json", str(tmp_path / "c.json"))
    (row,) = json.loads((tmp_path / "c.json").read_text())["tasks"]
    assert (row["episodes"], row["excluded"], row["a_only"]) == (7, 1, 7)
    assert code == 1 and "B only: T2" in text and "1 episode pairs left out" in text


def test_different_seeds_are_refused(bench, tmp_path):
    other = {**CONTRACT, "evaluation": {**CONTRACT["evaluation"], "seed": 1}}
    a = write_run(tmp_path, "a", {"T1": [True]})
    b = write_run(tmp_path, "b", {"T1": [True]}, contract=other, seed_offset=1)
    code, text = bench("compare", str(a), str(b))
    assert code == 2 and "seed: 0 != 1" in text
    code, text = bench("compare", str(a), str(b), "--allow-mismatch")
    assert code == 2 and "started from different seeds" in " ".join(text.split()) and "--seed" in text


def test_mismatched_contracts_are_refused_unless_allowed(bench, tmp_path):
    other = {**CONTRACT, "evaluation": {**CONTRACT["evaluation"], "sim_backend": "gpu"},
             "tasks": {"T1": {"max_steps": 50}, "T3": {"max_steps": 1}}}
    a = write_run(tmp_path, "a", {"T1": [True] * 6})
    b = write_run(tmp_path, "b", {"T1": [False] * 6}, contract=other)
    code, text = bench("compare", str(a), str(b))
    text = " ".join(text.split())
    assert code == 2
    assert 'sim_backend: "cpu" != "gpu"' in text and "T1.max_steps: 100 != 50" in text
    assert "T3" not in text  # a task only one run has is not compared, so its settings do not matter
    assert "--allow-mismatch" in text
    code, text = bench("compare", str(a), str(b), "--allow-mismatch", "--json", str(tmp_path / "c.json"))
    assert code == 1
    assert text.index("warning") < text.index("T1.max_steps: 100 != 50") < text.index("B vs A")
    assert "tasks.T1.max_steps: 100 != 50" in json.loads((tmp_path / "c.json").read_text())["mismatches"]


def test_runs_without_contract_are_refused_unless_allowed(bench, tmp_path):
    a = write_run(tmp_path, "a", {"T1": [True]}, contract=None)
    b = write_run(tmp_path, "b", {"T1": [True]})
    code, text = bench("compare", str(a), str(b))
    assert code == 2 and "A: written before bench recorded evaluation contracts" in " ".join(text.split())
    code, text = bench("compare", str(a), str(b), "--allow-mismatch")
    assert code == 0 and "no detectable difference" in text


def test_bad_paths(bench, tmp_path):
    a = write_run(tmp_path / "results", "a", {"T1": [True]})
    code, text = bench("compare", str(tmp_path / "nope"), str(a))
    assert code == 2 and "does not exist" in text
    code, text = bench("compare", str(tmp_path / "results"), str(a))
    assert code == 2 and "is not a run folder" in text and "run folders inside it: a" in " ".join(text.split())
    code, text = bench("compare", str(a), str(a), "--margin", "5")
    assert code == 2 and "--margin" in text
    code, text = bench("compare", str(a), str(a), "--json", str(tmp_path / "missing" / "c.json"))
    assert code == 2 and "cannot write" in text


# --- real runs ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expert_and_random(tmp_path_factory, short_tasks) -> tuple[Path, Path]:
    """PickCube-v1, 6 episodes each: expert 6/6, random 0/6, so McNemar's p = 2/64 < 0.05. The random run is made
    as a CI gate would make it: against the expert run as a stored baseline, failing on the regression."""
    output = tmp_path_factory.mktemp("runs")
    common = ["--tasks", "PickCube-v1", "--episodes", "6", "--num-envs", "3", "--output", str(output),
              "--tasks-dir", str(short_tasks)]
    assert main(["run", "--policy", "expert", *common, "--run-id", "expert"]) == 0
    assert main(["run", "--policy", "random", *common, "--run-id", "random", "--baseline", str(output / "expert"),
                 "--fail-on-regression"]) == 1
    return output / "expert", output / "random"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_expert_vs_random(bench, expert_and_random, tmp_path):
    expert, random = expert_and_random
    contract = read_manifest(expert)["contract"]
    assert contract["evaluation"]["seed"] == 0 and contract["evaluation"]["replan_steps"] == 5
    assert contract["tasks"]["PickCube-v1"]["max_steps"] == 50  # the short_tasks budget
    assert contract["tasks"]["PickCube-v1"]["instruction"] == read_manifest(expert)["suite"]["tasks"][0]["instruction"]
    assert contract["policy"]["preset"] == "expert" and "preset_fingerprint" in contract["policy"]
    assert not {"episodes", "num_envs", "run_id", "host"} & set(contract["evaluation"])
    code, text = bench("compare", str(expert), str(random), "--markdown", str(tmp_path / "c.md"))
    assert code == 1, text
    assert "worse" in text and "6/0" in text and "0.03125" in text and "-100.0 [" in text
    assert "worse" in (tmp_path / "c.md").read_text()
    code, text = bench("compare", str(random), str(expert))
    assert code == 0, text
    gate = (random / "baseline-comparison.md").read_text()  # what the gate printed, kept with the run
    assert "worse" in gate and "0.03125" in gate and str(expert) in gate
    assert "better" in text and "0/6" in text
    code, text = bench("leaderboard", str(expert.parent))  # both runs, one policy x task table
    assert code == 0 and "expert" in text and "random" in text and "100.0% [61.0, 100.0] n=6" in text


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_expert_vs_random_with_other_replan_steps_is_refused(bench, expert_and_random, tmp_path):
    expert, random = expert_and_random
    edited = tmp_path / "random-replan10"
    shutil.copytree(random, edited)
    manifest = read_manifest(edited)
    manifest["contract"]["evaluation"]["replan_steps"] = 10
    (edited / "manifest.json").write_text(json.dumps(manifest))
    code, text = bench("compare", str(expert), str(edited))
    assert code == 2 and "replan_steps: 5 != 10" in text
    code, text = bench("compare", str(expert), str(edited), "--allow-mismatch")
    assert code == 1 and text.index("replan_steps: 5 != 10") < text.index("worse")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_repeat_runs_with_consecutive_seeds_and_reports_the_spread(bench, tmp_path, short_tasks):
    code, text = bench("run", "--policy", "zero", "--tasks", "PickCube-v1", "--episodes", "1", "--num-envs", "1",
                       "--seed", "3", "--repeat", "2", "--output", str(tmp_path), "--run-id", "z",
                       "--tasks-dir", str(short_tasks))
    assert code == 0, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z-r0", "z-r1", "z-spread.md"]
    assert [read_manifest(tmp_path / r)["contract"]["evaluation"]["seed"] for r in ("z-r0", "z-r1")] == [3, 4]
    seeds = [read_episodes(tmp_path / r)["seed"].item() for r in ("z-r0", "z-r1")]
    assert seeds[0] != seeds[1]
    assert "spread over 2 repeats" in text and "0.0%, 0.0%" in (tmp_path / "z-spread.md").read_text()
