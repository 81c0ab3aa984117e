"""Sharded runs on a real local Ray cluster (2 CPUs) against the same run without Ray: the same episodes, once each,
with the same results; a shard whose worker is killed is run again by Ray."""

from pathlib import Path

import pandas as pd
import pytest

from bench.results import RUN_COLUMNS, read_episodes, read_manifest

from conftest import require

ray = require("ray", "needs ray: pip install -e '.[ray]'")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def comparable(run: Path) -> pd.DataFrame:
    episodes = read_episodes(run).sort_values(["task", "episode"]).reset_index(drop=True)
    return episodes.drop(columns=[c for c in RUN_COLUMNS if c in episodes])  # what may differ between runs


def args(short_tasks: Path, output: Path, run_id: str, *extra: str) -> list[str]:
    return ["run", "--policy", "random", "--tasks", "PickCube-v1,PushCube-v1", "--episodes", "2", "--num-envs", "1",
            "--tasks-dir", str(short_tasks), "--output", str(output), "--run-id", run_id, *extra]


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": ":".join(__import__("sys").path)}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(short_tasks, tmp_path_factory) -> Path:
    from bench.cli import main

    output = tmp_path_factory.mktemp("local")
    assert main(args(short_tasks, output, "local")) == 0
    return output / "local"


def test_shards_give_the_local_results_and_a_killed_shard_runs_again(bench, short_tasks, local_cluster, local_run,
                                                                    tmp_path):
    """Four shards (two tasks x two episodes, one episode each); the first shard to reach its 3rd policy call
    SIGKILLs its Ray worker, once. The run completes with every episode written once, equal to the local run."""
    preset = tmp_path / "killer.toml"  # the random baseline, plus the kill
    preset.write_text(f'plugin = "faulty_policies:ShardKiller"\n[params]\nkill_at = 3\nmarker = "{tmp_path / "m"}"\n')
    sharded = args(short_tasks, tmp_path, "sharded", "--ray", "--shard-episodes", "1")
    sharded[2] = str(preset)
    code, text = bench(*sharded)
    assert code == 0, text
    assert (tmp_path / "m").is_file()  # the kill happened
    run = tmp_path / "sharded"
    episodes = read_episodes(run)
    assert len(episodes) == 4 and not episodes.duplicated(["task", "episode"]).any()
    assert (episodes["status"] == "ok").all()
    pd.testing.assert_frame_equal(comparable(run), comparable(local_run))
    manifest = read_manifest(run)
    assert len({(s["task"], tuple(s["episodes"])) for s in manifest["shards"]}) == 4  # where each shard ran
    assert manifest["cluster"]["nodes"] and manifest["cluster"]["resources"]["CPU"] == 2
    local = read_manifest(local_run)["contract"]
    assert {k: v for k, v in manifest["contract"].items() if k != "policy"} == {
        k: v for k, v in local.items() if k != "policy"}  # `bench compare` accepts the two runs as comparable
