"""Pinned seeds, the physics plan, the evaluation contract and its one comparison (no simulation)."""

from dataclasses import fields, replace

import pytest

from bench import contract
from bench.config import AFTER, OUTPUT, POLICY, RESUME, WHAT, WHERE, RunConfig
from bench.errors import BenchError
from bench.envs import plan_physics, summary
from bench.policies import PolicyPreset
from bench.tasks import episode_seed, load_suite

# Stored baselines pair episodes by these seeds: they must never change.
GOLDEN_SEEDS = {
    (0, "PickCube-v1", 0): 1677439382, (0, "PickCube-v1", 1): 585042086, (0, "PickCube-v1", 49): 200453415,
    (1, "PickCube-v1", 0): 115525674, (0, "StackCube-v1", 0): 657493207, (0, "PushCube-v1", 0): 749739203,
    (0, "PullCube-v1", 0): 1665295865, (0, "PlaceSphere-v1", 0): 2085614656,
    (0, "PegInsertionSide-v1", 0): 1957786695, (0, "PegInsertionSide-v1", 49): 1337076328,
}


@pytest.mark.parametrize("key", list(GOLDEN_SEEDS))
def test_episode_seeds_never_change(key):
    assert episode_seed(*key) == GOLDEN_SEEDS[key]


def test_every_run_setting_has_one_group():
    assert RunConfig.names(WHAT, POLICY, WHERE, OUTPUT, AFTER, RESUME) == [f.name for f in fields(RunConfig)]


def test_physics_is_planned_per_task_before_the_run():
    tasks = list(load_suite().tasks.values())
    plan = plan_physics(tasks, "auto", gpu=(True, "CUDA device and PhysX GPU library present"))
    assert plan.backends["PegInsertionSide-v1"] == "cpu" and "gpu_pinnable = false" in plan.why["PegInsertionSide-v1"]
    assert {b for t, b in plan.backends.items() if not t.startswith("PegInsertionSide-v1")} == {"gpu"}
    assert plan.backends["PegInsertionSide-v1@light-dim"] == "cpu"  # its variants too
    assert "CPU workers for PegInsertionSide-v1" in summary(plan.backends, plan.why)
    plan = plan_physics(tasks, "gpu", gpu=(True, "ok"))  # asked for GPU: still CPU where GPU cannot pin episodes
    assert plan.backends["PegInsertionSide-v1"] == "cpu" and plan.backends["PickCube-v1"] == "gpu"
    assert set(plan_physics(tasks, "auto", gpu=(False, "no CUDA")).backends.values()) == {"cpu"}
    assert set(plan_physics(tasks, "cpu").backends.values()) == {"cpu"}
    with pytest.raises(BenchError, match="--sim-backend gpu cannot start: no CUDA"):
        plan_physics(tasks, "gpu", gpu=(False, "no CUDA"))


def run_contract(backends=None, packages=None, description=None, **settings):
    suite = load_suite()
    tasks = suite.resolve("PickCube-v1,PegInsertionSide-v1")
    backends = backends or {t.id: "cpu" for t in tasks}
    packages = packages or {"mani_skill": "3.0.1", "sapien": "3.0.1", "torch": "2.11.0"}
    description = description or {"name": "pi05", "checkpoint": "/a/ckpt", "checkpoint_fingerprint": "abc"}
    return contract.build(RunConfig(**settings), suite.version, tasks, PolicyPreset("pi05", "pi"), description,
                          backends, packages)


def test_the_contract_records_each_tasks_backend_and_only_fields_that_change_results():
    built = run_contract(backends={"PickCube-v1": "gpu", "PegInsertionSide-v1": "cpu"})
    assert built["tasks"]["PickCube-v1"]["sim_backend"] == "gpu"
    assert built["tasks"]["PegInsertionSide-v1"]["sim_backend"] == "cpu"
    assert "gpu_pinnable" not in built["tasks"]["PegInsertionSide-v1"]  # it changes no result; the backend does
    assert "sim_backend" not in built["evaluation"]


def test_a_contract_from_before_per_task_backends_still_matches():
    new = run_contract()
    old = {**new, "evaluation": {**new["evaluation"], "sim_backend": "cpu"},
           "tasks": {t: {k: v for k, v in spec.items() if k != "sim_backend"} for t, spec in new["tasks"].items()}}
    assert contract.differences(old, new, policy=True) == []
    gpu = {**old, "evaluation": {**old["evaluation"], "sim_backend": "gpu"}}
    assert contract.differences(gpu, new, ["PickCube-v1"]) == ['tasks.PickCube-v1.sim_backend: "gpu" != "cpu"']


def test_differences_name_every_setting_that_differs():
    found = contract.differences(run_contract(seed=0), run_contract(seed=1, replan_steps=10))
    assert found == ["evaluation.seed: 0 != 1", "evaluation.replan_steps: 5 != 10"]
    assert contract.differences(run_contract(), run_contract(description={"name": "pi05"}), policy=True) != []
    assert contract.differences(run_contract(), run_contract(description={"name": "pi05"})) == []  # compare's view


def test_a_ray_shard_must_evaluate_what_the_run_does():
    run, packages = run_contract(), {"mani_skill": "3.0.1", "sapien": "3.0.1", "torch": "2.11.0"}
    node = {"host": "node-b", "node_id": "f00d" * 8}
    elsewhere = run_contract(description={"name": "pi05", "checkpoint": "/b/ckpt", "checkpoint_fingerprint": "abc"})
    contract.check_shard(run, packages, elsewhere, packages, node)  # the checkpoint found under another path: fine
    other_weights = run_contract(description={"name": "pi05", "checkpoint": "/a/ckpt", "checkpoint_fingerprint": "def"})
    gpu = run_contract(backends={"PickCube-v1": "gpu", "PegInsertionSide-v1": "cpu"})
    for shard, shard_packages, why in [
        (other_weights, packages, 'policy.checkpoint_fingerprint: "abc" != "def"'),
        (gpu, packages, 'tasks.PickCube-v1.sim_backend: "cpu" != "gpu"'),
        (run, {**packages, "torch": "2.10.0"}, 'packages.torch: "2.11.0" != "2.10.0"'),
    ]:
        with pytest.raises(BenchError, match="the Ray shard on node node-b") as refused:
            contract.check_shard(run, packages, shard, shard_packages, node)
        assert why in str(refused.value)


def test_resume_takes_what_was_evaluated_from_the_manifest_and_where_from_the_command_line(tmp_path):
    recorded = RunConfig(policy="random", tasks="smoke", suite="smoke", episodes=3, seed=4, num_envs=8)
    resumed = RunConfig(resume=tmp_path / "run", num_envs=2, worker_timeout=60).resumed(
        {**vars(recorded), "tasks_dir": str(recorded.tasks_dir), "presets_dir": str(recorded.presets_dir)})
    assert (resumed.policy, resumed.tasks, resumed.suite, resumed.seed) == ("random", "smoke", None, 4)
    assert (resumed.num_envs, resumed.worker_timeout, resumed.run_id) == (2, 60, "run")
    with pytest.raises(BenchError, match="drop --seed"):
        replace(RunConfig(resume=tmp_path / "run"), seed=1).resumed(vars(recorded))
