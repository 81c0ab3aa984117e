"""A policy is its preset with its checkpoint and params (or its --label), not its preset name: `bench leaderboard`,
`bench report` and `bench compare` keep two checkpoints of one preset apart, warn about one label on two policies,
and never mix runs evaluated under different contracts in one table (issue 12). Run folders are written directly
(tests/run_folders.py), except the last test, which reads the manifests of real `bench run --label` runs."""

import hashlib

import pytest

from bench.results import read_manifest

from run_folders import pi05_params, write_run

PICK = "PickCube-v1"
DAY1, DAY2, DAY3 = (f"2026-11-0{d}T00:00:00+00:00" for d in (1, 2, 3))


def short(weights: str) -> str:
    return hashlib.sha256(weights.encode()).hexdigest()[:6]


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """policy -> column -> cell of each Markdown table in `text` (later tables update earlier rows)."""
    rows, header = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        if line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        else:
            rows.setdefault(cells[0], {}).update(zip(header[1:], cells[1:]))
    return rows


def two_checkpoints(root):
    """pi05 with checkpoint A: 4/4, then (newer) pi05 with checkpoint B: 0/4; the bug showed only B."""
    write_run(root, "pi05-a", {PICK: [True] * 4}, preset="pi05", params=pi05_params("/ckpt/run-a/29999"),
              weights="A", created=DAY1)
    write_run(root, "pi05-b", {PICK: [False] * 4}, preset="pi05", params=pi05_params("/ckpt/run-b"),
              weights="B", created=DAY2)
    return f"pi05@run-a/29999#{short('A')}", f"pi05@run-b#{short('B')}"


def test_two_checkpoints_of_one_preset_are_two_leaderboard_rows(bench, tmp_path):
    name_a, name_b = two_checkpoints(tmp_path)
    code, text = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    assert code == 0, text
    rows = markdown_rows((tmp_path / "board.md").read_text())
    assert rows == {name_a: {PICK: "100.0% [51.0, 100.0] n=4", "mean": "100.0%"},
                    name_b: {PICK: "0.0% [0.0, 49.0] n=4", "mean": "0.0%"}}
    assert name_a in text and name_b in text


def test_report_page_and_its_comparison_keep_checkpoints_apart(bench, tmp_path):
    name_a, name_b = two_checkpoints(tmp_path)
    code, text = bench("report", str(tmp_path))
    assert code == 0, text
    page = (tmp_path / "report.html").read_text()
    assert f"<td>{name_a}</td>" in page and f"<td>{name_b}</td>" in page
    assert f"<h3>{name_b} (B) vs {name_a} (A)</h3>" in page and "4/0" in page  # A only solved 4 pairs


def test_compare_labels_runs_by_their_policy_identity(bench, tmp_path):
    name_a, name_b = two_checkpoints(tmp_path)
    code, text = bench("compare", str(tmp_path / "pi05-a"), str(tmp_path / "pi05-b"))
    text = " ".join(text.split())
    assert code == 0 and f"pi05-a ({name_a})" in text and f"pi05-b ({name_b})" in text


def test_the_same_weights_in_two_places_are_one_policy_and_the_newest_run_counts(bench, tmp_path):
    write_run(tmp_path, "old", {PICK: [False] * 2}, preset="pi05", params=pi05_params("/mnt/a/29999"), weights="A",
              created=DAY1)
    write_run(tmp_path, "new", {PICK: [True] * 2}, preset="pi05", params=pi05_params("/data/a/29999"), weights="A",
              created=DAY2)
    code, _ = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    assert code == 0
    assert markdown_rows((tmp_path / "board.md").read_text()) == {
        f"pi05@a/29999#{short('A')}": {PICK: "100.0% [34.2, 100.0] n=2", "mean": "100.0%"}}


def test_one_preset_with_other_params_gets_fingerprints_and_labels_name_rows(bench, tmp_path):
    write_run(tmp_path, "r1", {PICK: [True]}, preset="random", created=DAY1)
    write_run(tmp_path, "r2", {PICK: [False]}, preset="random", params={"scale": 0.5}, created=DAY2)
    write_run(tmp_path, "z", {PICK: [False]}, preset="zero", created=DAY2)
    write_run(tmp_path, "mine", {PICK: [True]}, preset="pi05", params=pi05_params("/c"), weights="C", label="ours",
              created=DAY3)
    code, _ = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    assert code == 0
    fingerprints = {run: read_manifest(tmp_path / run)["policy"]["fingerprint"][:6] for run in ("r1", "r2")}
    assert set(markdown_rows((tmp_path / "board.md").read_text())) == {
        f"random#{fingerprints['r1']}", f"random#{fingerprints['r2']}", "zero", "ours"}


def test_one_label_on_two_policies_is_a_warning_and_two_rows(bench, tmp_path):
    write_run(tmp_path, "a", {PICK: [True] * 2}, preset="pi05", params=pi05_params("/c/a"), weights="A",
              label="best", created=DAY1)
    write_run(tmp_path, "b", {PICK: [False] * 2}, preset="pi05", params=pi05_params("/c/b"), weights="B",
              label="best", created=DAY2)
    code, text = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    text = " ".join(text.split())
    assert code == 0 and "warning" in text and "label 'best' names 2 different policies" in text
    rows = markdown_rows((tmp_path / "board.md").read_text())
    assert len(rows) == 2 and all(name.startswith("best#") for name in rows)
    assert "label 'best' names 2 different policies" in (tmp_path / "board.md").read_text()
    code, text = bench("report", str(tmp_path))
    assert code == 0 and "label 'best' names 2 different policies" in " ".join(text.split())
    page = (tmp_path / "report.html").read_text()
    assert 'class="notice"' in page and "label &#39;best&#39; names 2 different policies" in page


def test_runs_under_other_evaluation_contracts_are_not_mixed(bench, tmp_path):
    """Seed 0 (two runs, the majority) and seed 1 (the newest random run): two tables, the second headed with what
    differs; the older seed-0 result of random stays visible. A task with another step budget gets its own column."""
    write_run(tmp_path, "random-seed0", {PICK: [True] * 2}, preset="random", created=DAY1)
    write_run(tmp_path, "zero-seed0", {PICK: [False] * 2, "PushCube-v1": [True]}, preset="zero", created=DAY1,
              specs={"PushCube-v1": {"max_steps": 50}})
    write_run(tmp_path, "random-seed1", {PICK: [False] * 2}, preset="random", created=DAY2, evaluation={"seed": 1})
    write_run(tmp_path, "expert-seed0", {"PushCube-v1": [True]}, preset="expert", created=DAY2)
    code, text = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    assert code == 0, text
    text = " ".join(text.split())
    assert "evaluated 2 different ways" in text
    assert "evaluation 2 of 2: evaluated differently from table 1: seed 1 (table 1: 0)" in text
    markdown = (tmp_path / "board.md").read_text()
    first, second = markdown.split("## ")[1:]
    assert "seed 0" in first.splitlines()[0] and "seed 1 (table 1: 0)" in second.splitlines()[0]
    assert markdown_rows(first) == {
        "random": {PICK: "100.0% [34.2, 100.0] n=2", "PushCube-v1": "-", "PushCube-v1 (max_steps 50)": "-",
                   "mean": "100.0%"},
        "zero": {PICK: "0.0% [0.0, 65.8] n=2", "PushCube-v1": "-",
                 "PushCube-v1 (max_steps 50)": "100.0% [20.7, 100.0] n=1", "mean": "50.0%"},
        "expert": {PICK: "-", "PushCube-v1": "100.0% [20.7, 100.0] n=1", "PushCube-v1 (max_steps 50)": "-",
                   "mean": "100.0%"}}
    assert markdown_rows(second) == {"random": {PICK: "0.0% [0.0, 65.8] n=2", "mean": "0.0%"}}
    code, text = bench("report", str(tmp_path))
    page = (tmp_path / "report.html").read_text()
    assert code == 0 and page.count('class="leaderboard"') == 2 and "seed 1 (table 1: 0)" in page
    assert "<h3>zero (B) vs random (A) - evaluation 1</h3>" in page  # compared within a contract only
    assert "- evaluation 2</h3>" not in page  # one policy there: nothing to compare


def test_runs_without_a_recorded_contract_are_a_table_of_their_own(bench, tmp_path):
    write_run(tmp_path, "new", {PICK: [True]}, preset="random", created=DAY2)
    write_run(tmp_path, "old", {PICK: [False]}, preset="random", created=DAY1, contract=False)
    code, text = bench("leaderboard", str(tmp_path))
    assert code == 0 and "no evaluation contract recorded" in " ".join(text.split())


def test_identity_of_a_manifest():
    from bench.identity import policy_identity, policy_names

    manifest = {"policy": {"name": "pi05", "label": None, "plugin": "pi", "fingerprint": "f" * 16,
                           "params": {"checkpoint": "/x/pi05_maniskill/29999/", "dtype": "bfloat16"},
                           "describe": {"checkpoint_fingerprint": "abcdef0123",
                                        "checkpoint": "/x/pi05_maniskill/29999/"}}}
    identity = policy_identity(manifest)
    assert policy_names([identity]) == {identity: "pi05@pi05_maniskill/29999#abcdef"}
    moved = {"policy": {**manifest["policy"], "params": {**manifest["policy"]["params"], "checkpoint": "/y/29999"}}}
    assert policy_identity(moved) == identity  # the same weights and params elsewhere: one policy
    other_dtype = {"policy": {**manifest["policy"], "params": {**manifest["policy"]["params"], "dtype": "float32"}}}
    assert policy_identity(other_dtype) != identity
    old = policy_identity({"policy": {"name": "expert"}})  # a manifest of an older bench
    assert policy_names([old]) == {old: "expert"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_real_run_with_a_label(bench, tmp_path, short_tasks):
    """`bench run --label` as the runner records it names the row; the same label on another policy (a run folder
    written directly) warns. Also: every column of a real record is classified (bench.results)."""
    from bench.results import KEY_COLUMNS, RESULT_COLUMNS, RUN_COLUMNS, read_episodes

    code, text = bench("run", "--policy", "zero", "--label", "still", "--tasks", PICK, "--episodes", "1",
                       "--num-envs", "1", "--tasks-dir", str(short_tasks), "--output", str(tmp_path),
                       "--run-id", "zero")
    assert code == 0, text
    records = read_episodes(tmp_path / "zero")
    assert set(records.columns) == {*KEY_COLUMNS, *RESULT_COLUMNS, *RUN_COLUMNS}
    manifest = read_manifest(tmp_path / "zero")  # start-up: the policy build, then what the scenes still needed
    assert manifest["startup_s"] >= manifest["policy_build_s"] + records.task_setup_s.iloc[0]
    assert manifest["policy_build_s"] > 0 and records.task_setup_s.iloc[0] > 0
    code, text = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    assert code == 0 and set(markdown_rows((tmp_path / "board.md").read_text())) == {"still"}
    write_run(tmp_path, "random", {PICK: [False]}, preset="random", label="still", created="2999-01-01T00:00:00+00:00",
              evaluation=read_manifest(tmp_path / "zero")["contract"]["evaluation"])
    code, text = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    assert code == 0 and "label 'still' names 2 different policies" in " ".join(text.split())
    fingerprints = [read_manifest(tmp_path / run)["policy"]["fingerprint"][:6] for run in ("zero", "random")]
    assert set(markdown_rows((tmp_path / "board.md").read_text())) == {f"still#{f}" for f in fingerprints}
