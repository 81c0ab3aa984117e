"""Bad input: one clear line naming the fix, exit code 2, nothing written."""

from pathlib import Path
import os
import subprocess
import sys

import pytest


def assert_nothing_written(output: Path):
    assert not output.exists()


@pytest.mark.parametrize("args,message", [
    (["--policy", "expret"], "unknown policy 'expret': did you mean expert"),
    (["--tasks", "PickCube-v2"], "unknown task 'PickCube-v2': did you mean PickCube-v1"),
    (["--episodes", "0"], "--episodes must be a positive integer, got 0"),
    (["--num-envs", "-1"], "--num-envs must be a positive integer, got -1"),
    (["--replan-steps", "0"], "--replan-steps must be a positive integer"),
    (["--suite", "smok"], "unknown suite 'smok': did you mean smoke?"),
    (["--fail-on-regression"], "--fail-on-regression needs --baseline"),
    (["--baseline", "no-such-run"], "no-such-run does not exist: pass a run folder"),
    (["--video", "-1"], "--video must be >= 0, got -1"),
])
def test_bad_run_arguments(bench, tmp_path, args, message):
    output = tmp_path / "out"
    code, text = bench("run", "--output", str(output), *args)
    assert code == 2
    assert message in " ".join(text.split())
    assert_nothing_written(output)


def test_unwritable_output(bench, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, text = bench("run", "--policy", "zero", "--tasks", "PickCube-v1", "--output", str(blocker / "results"))
    assert code == 2
    assert "cannot write results to" in text and "a-file is a file" in text and "--output" in text
    assert blocker.read_text() == "not a folder"


def test_malformed_policy_preset_is_reported_with_its_line(bench, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text('plugin = "zero"\ndescription = \n')
    code, text = bench("run", "--policy", str(preset), "--output", str(tmp_path / "out"))
    assert code == 2
    assert "mine.toml: malformed TOML" in text and "line 2" in text
    assert_nothing_written(tmp_path / "out")


def test_preset_naming_unknown_plugin(bench, tmp_path):
    preset = tmp_path / "mine.toml"
    preset.write_text('plugin = "randon"\n')
    code, text = bench("run", "--policy", str(preset), "--output", str(tmp_path / "out"))
    assert code == 2
    assert "unknown policy plugin 'randon': did you mean random?" in " ".join(text.split())


@pytest.mark.parametrize("command", ["leaderboard", "report"])
def test_aggregating_a_missing_or_empty_folder(bench, tmp_path, command):
    code, text = bench(command, str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in text
    code, text = bench(command, str(tmp_path))
    assert code == 2 and "no finished episodes" in text


def test_tasks_and_policies_listings(bench):
    code, text = bench("tasks")
    assert code == 0 and "PegInsertionSide-v1" in text and "extras" in text
    code, text = bench("policies")
    assert code == 0
    for name in ("expert", "random", "zero"):
        assert name in text


def test_the_command_ends_without_teardown_and_loses_no_output(bench):
    """`bench` (`bench.cli.entry`) ends the process with os._exit after main: its exit code is main's and a pipe gets
    what main printed, for a success and for a refused input; what an exit handler prints (into Python's buffer,
    after rich's last flush) is not lost either."""
    for args in (["tasks"], ["run", "--policy", "no-such-policy", "--tasks", "all"]):
        code, text = bench(*args)
        proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout.split()) == (code, text.split())
    assert code == 2 and "unknown policy 'no-such-policy'" in text
    buffered = "import atexit, sys; atexit.register(print, 'printed at exit'); sys.argv = ['bench', 'policies']; " \
               "import bench.cli; bench.cli.entry()"
    buffering = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe's block buffer
    proc = subprocess.run([sys.executable, "-c", buffered], capture_output=True, text=True, timeout=120, env=buffering)
    assert proc.returncode == 0 and "expert" in proc.stdout and proc.stdout.endswith("printed at exit\n")


@pytest.mark.timeout(300)
def test_missing_vulkan_device_is_one_clear_line(tmp_path):
    """A real run in a subprocess whose Vulkan loader finds no driver."""
    env = {**os.environ, "VK_DRIVER_FILES": "/nonexistent.json", "VK_ICD_FILENAMES": "/nonexistent.json"}
    output = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--policy", "zero", "--tasks", "PickCube-v1",
                           "--episodes", "1", "--num-envs", "1", "--output", str(output)],
                          env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 2
    assert "no Vulkan device for rendering" in proc.stdout
    assert "install-system-deps.sh" in proc.stdout
    assert_nothing_written(output)


def test_policy_that_cannot_run_a_task_is_refused_before_any_episode(bench, tmp_path):
    code, text = bench("run", "--policy", "expert", "--tasks", "PickCube-v1,PlugCharger-v1",
                       "--output", str(tmp_path / "out"))
    assert code == 2
    assert "the expert policy has no script for PlugCharger-v1" in " ".join(text.split())
    assert "running" not in text and "0/50" not in text  # the workers started, but no run was shown
    assert_nothing_written(tmp_path / "out")


def test_an_output_folder_that_holds_another_run_is_refused(bench, tmp_path):
    run = tmp_path / "out" / "mine"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    code, text = bench("run", "--policy", "zero", "--tasks", "PickCube-v1", "--output", str(tmp_path / "out"),
                       "--run-id", "mine")
    assert code == 2 and "already exists: choose another --run-id, or --resume" in " ".join(text.split())
    assert [p.name for p in run.iterdir()] == ["manifest.json"] and (run / "manifest.json").read_text() == "{}"


def test_resume_of_a_folder_that_is_not_a_run(bench, tmp_path):
    code, text = bench("run", "--resume", str(tmp_path))
    assert code == 2 and "cannot resume" in text and "no manifest.json" in text
    assert list(tmp_path.iterdir()) == []
