"""Reading run folders: a damaged episodes.jsonl is an error naming the line, never silently shorter (issue 12,
bug 9a), and what "the same episode results" means (`same_episode_results`). Run folders are written directly."""

import pandas as pd
import pytest

from bench.errors import BenchError
from bench.results import (EPISODES, RESULT_COLUMNS, RUN_COLUMNS, CorruptEpisodes, RunWriter, read_episodes,
                           read_manifest, same_episode_results)

from run_folders import write_run

PICK = "PickCube-v1"


@pytest.fixture
def run(tmp_path):
    """A completed run of four episodes: 1 1 0 0."""
    return write_run(tmp_path, "run", {PICK: [True, True, False, False]})


def lines(run) -> list[str]:
    return (run / EPISODES).read_text().splitlines(keepends=True)


def damage(run, number: int, text: str) -> None:
    """Replaces line `number` (1-based) of the run's episodes.jsonl."""
    content = lines(run)
    content[number - 1] = text
    (run / EPISODES).write_text("".join(content))


def test_a_torn_last_line_is_skipped(run):
    with (run / EPISODES).open("a") as f:
        f.write('{"task": "PickCube-v1", "episo')  # killed mid-write, or still writing: no newline yet
    assert len(read_episodes(run)) == 4
    with (run / EPISODES).open("a") as f:
        f.write('de": 4}')  # a complete record is committed only with its newline
    assert len(read_episodes(run)) == 4


@pytest.mark.parametrize("number,text,problem", [
    (2, '{"task": "PickCube-v1", "episo\n', "not valid JSON"),
    (4, '{"task": "PickCube-v1"\n', "not valid JSON"),  # the last line, complete with its newline
    (3, '[1, 2]\n', "a JSON list, not a record"),
    (3, '{"success_once": true}\n', "a record without its task and episode index"),
])
def test_a_damaged_line_is_an_error_naming_file_and_line(run, number, text, problem):
    damage(run, number, text)
    assert_damaged(run, number, problem)


def test_a_line_that_is_not_utf8_is_an_error(run):
    (run / EPISODES).write_bytes(b'{"task": "Pick\xe9"}\n' + (run / EPISODES).read_bytes())
    assert_damaged(run, 1, "not UTF-8 text")


def assert_damaged(run, number: int, problem: str) -> None:
    with pytest.raises(CorruptEpisodes) as error:
        read_episodes(run)
    message = str(error.value)
    assert isinstance(error.value, BenchError) and "\n" not in message
    assert f"{run / EPISODES} line {number} is {problem}" in message
    repair = f"remove or fix line {number} of {run / EPISODES} (the run's other records are intact), then rerun"
    assert repair in message


def test_blank_lines_hold_no_record(run):
    content = lines(run)
    (run / EPISODES).write_text("".join(content[:2]) + "\n" + "".join(content[2:]))
    assert len(read_episodes(run)) == 4


def test_resume_cuts_a_torn_tail_but_refuses_a_damaged_line(run):
    """The runner's --resume path: RunWriter(resume=True) cuts the torn tail, then reads the records."""
    with (run / EPISODES).open("a") as f:
        f.write('{"task": "PickCube-v1", "episo')
    writer = RunWriter(run, read_manifest(run), resume=True)
    assert len(writer.records) == 4 and (run / EPISODES).read_text().endswith("\n")
    writer.finish("completed")
    damage(run, 2, "garbage\n")
    with pytest.raises(CorruptEpisodes, match="line 2"):
        RunWriter(run, read_manifest(run), resume=True)
    assert lines(run)[1] == "garbage\n"  # nothing was dropped or rewritten


def test_leaderboard_and_report_list_a_damaged_run_and_go_on(bench, tmp_path):
    write_run(tmp_path, "good", {PICK: [True]}, preset="expert")
    bad = write_run(tmp_path, "bad", {PICK: [False, False]}, preset="zero")
    damage(bad, 1, "{\n")
    expected = f"unreadable: {bad}: {bad / EPISODES} line 1 is not valid JSON"
    code, text = bench("leaderboard", str(tmp_path), "--markdown", str(tmp_path / "board.md"))
    text = " ".join(text.split())
    assert code == 0 and expected in text and "expert" in text and "zero" not in text.replace(expected, "")
    assert expected in (tmp_path / "board.md").read_text()
    code, text = bench("report", str(tmp_path))
    assert code == 0 and expected in " ".join(text.split())
    page = (tmp_path / "report.html").read_text()
    assert "line 1 is not valid JSON" in page and "<td>expert</td>" in page


def test_only_damaged_runs_is_no_finished_episodes(bench, tmp_path):
    bad = write_run(tmp_path, "bad", {PICK: [False]})
    (bad / "manifest.json").write_text('{"run_id": ')
    code, text = bench("leaderboard", str(tmp_path))
    text = " ".join(text.split())
    assert code == 2 and f"unreadable: {bad}: {bad / 'manifest.json'} is damaged" in text
    assert "no finished episodes" in text


def test_compare_on_a_damaged_run_is_one_line_and_exit_2(bench, tmp_path, run):
    other = write_run(tmp_path, "other", {PICK: [True] * 4})
    damage(run, 3, "{}{}\n")
    code, text = bench("compare", str(other), str(run))
    assert code == 2
    assert text.startswith("error:") and text.count("\n") == 1, text
    assert f"line 3 of {run / EPISODES}" in " ".join(text.split())


# --- the same episode results ---------------------------------------------------------------------------------


def records(run) -> pd.DataFrame:
    return read_episodes(run)


def test_same_episode_results_ignores_how_and_where_episodes_ran(tmp_path):
    a = records(write_run(tmp_path, "a", {PICK: [True, False, True]}))
    b = a.sample(frac=1, random_state=0).assign(  # another order, run, wave layout, retry, video
        run_id="b", policy="killer", wall_time_s=9.0, sim_time_s=8.0, policy_time_s=1.0, wave_size=1, lanes=2,
        retry=[True, False, False], video="videos/x.mp4")
    assert set(RUN_COLUMNS) >= {"run_id", "policy", "wall_time_s", "sim_time_s", "policy_time_s", "wave_size",
                                "lanes", "retry", "video"}
    assert not set(RUN_COLUMNS) & set(RESULT_COLUMNS)
    assert same_episode_results(a, b) == []


def test_same_episode_results_lists_every_difference(tmp_path):
    a = records(write_run(tmp_path, "a", {PICK: [True, False, True]}))
    b = a.copy()
    b.loc[0, "success_once"] = False
    b.loc[1, "return"] = 0.5
    b.loc[2, "error"] = "policy raised"
    b = pd.concat([b, a.iloc[[1]].assign(episode=7)], ignore_index=True).assign(new_column=1)
    assert same_episode_results(a, b) == [
        "column new_column only in B",
        "PickCube-v1 episode 0: success_once True != False",
        "PickCube-v1 episode 1: return 0.0 != 0.5",
        "PickCube-v1 episode 2: error None != 'policy raised'",
        "PickCube-v1 episode 7: only in B",
    ]
    twice = pd.concat([a, a.iloc[[0]]], ignore_index=True)
    assert same_episode_results(twice, a) == ["PickCube-v1 episode 0: recorded twice in A"]
    assert same_episode_results(a, a.iloc[:0]) == ["B has no episodes"]
