from pathlib import Path
import shutil

import pytest

from bench.errors import BenchError
from bench.tasks import DEFAULT_TASKS_DIR, episode_seed, episodes_for, load_suite

SIX = ["PickCube-v1", "StackCube-v1", "PushCube-v1", "PullCube-v1", "PlaceSphere-v1", "PegInsertionSide-v1"]


def test_suite_all_is_the_six_tasks_and_extras_are_registered():
    suite = load_suite()
    assert [t.id for t in suite.resolve("all")] == SIX
    assert [t.id for t in suite.resolve("extras")] == ["PlugCharger-v1", "LiftPegUpright-v1"]
    for task in suite.tasks.values():
        assert task.instruction and task.max_steps > 0
        assert task.image_size == (224, 224)
        assert task.cameras == ("base_camera", "hand_camera")
    assert "goal_site" in suite.tasks["PickCube-v1"].show_hidden


def test_resolve_list_deduplicates_and_unknown_names_suggest_close_matches():
    suite = load_suite()
    assert [t.id for t in suite.resolve("PushCube-v1, PickCube-v1,PushCube-v1")] == ["PushCube-v1", "PickCube-v1"]
    with pytest.raises(BenchError, match="unknown task 'PikCube-v1': did you mean PickCube-v1"):
        suite.resolve("PikCube-v1")


def test_episode_seeds_depend_only_on_run_seed_task_and_index():
    assert episode_seed(0, "PickCube-v1", 3) == episode_seed(0, "PickCube-v1", 3)
    seeds = {episode_seed(s, t, i) for s in (0, 1) for t in SIX for i in range(50)}
    assert len(seeds) == 2 * 6 * 50
    assert episodes_for("PickCube-v1", 7, 3, start=2)[0].seed == episode_seed(7, "PickCube-v1", 2)


def test_malformed_task_file_names_file_and_line(tmp_path: Path):
    shutil.copytree(DEFAULT_TASKS_DIR, tmp_path / "tasks")
    (tmp_path / "tasks" / "PickCube-v1.toml").write_text('instruction = "x"\nmax_steps = = 3\n')
    with pytest.raises(BenchError, match=r"PickCube-v1.toml: malformed TOML: .*line 2"):
        load_suite(tmp_path / "tasks")


def load_with_appended(tmp_path: Path, file: str, text: str):
    """load_suite on a copy of tasks/ where `text` is appended to `file`."""
    shutil.copytree(DEFAULT_TASKS_DIR, tmp_path / "tasks")
    with (tmp_path / "tasks" / file).open("a") as f:
        f.write(text)
    return load_suite(tmp_path / "tasks")


def test_task_file_with_unknown_key_is_refused(tmp_path: Path):
    with pytest.raises(BenchError, match=r"PushCube-v1.toml: unknown keys \['max_stpes'\]"):
        load_with_appended(tmp_path, "PushCube-v1.toml", "max_stpes = 10\n")


def test_smoke_suite_sets_tasks_and_episodes_unless_overridden():
    from bench.config import DEFAULT_EPISODES, RunConfig

    suite = load_suite()
    assert [t.id for t in suite.resolve("smoke")] == SIX and suite.suite_episodes == {"smoke": 3}
    assert (RunConfig(suite="smoke").resolve(suite).tasks, RunConfig(suite="smoke").resolve(suite).episodes) == ("smoke", 3)
    assert RunConfig(suite="smoke", episodes=8).resolve(suite).episodes == 8
    assert RunConfig(tasks="smoke").resolve(suite).episodes == DEFAULT_EPISODES  # --tasks only chooses tasks
    with pytest.raises(BenchError, match="unknown suite 'smok': did you mean smoke"):
        RunConfig(suite="smok").resolve(suite)
    with pytest.raises(BenchError, match="both choose tasks"):
        RunConfig(suite="smoke", tasks="PickCube-v1").resolve(suite)


def test_suite_table_with_unknown_keys_is_refused(tmp_path: Path):
    with pytest.raises(BenchError, match=r"suite 'mine' must be a list of task ids or a table"):
        load_with_appended(tmp_path, "suite.toml", '\n[suites.mine]\ntasks = ["PickCube-v1"]\nepisode = 4\n')
