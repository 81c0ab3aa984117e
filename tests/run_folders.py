"""Run folders written directly, as `bench run` writes them, for the tests of what reads them (leaderboard, report,
compare): bench's own RunWriter, manifests with the structure of `bench.runner._manifest`, records with the
columns and pinned seeds of real ones. No simulation, so such a test costs milliseconds."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from bench.policies import PolicyPreset
from bench.results import RunWriter
from bench.tasks import episodes_for, load_suite

EVALUATION = {"suite_version": "maniskill3-tabletop-2026.11.1", "seed": 0, "replan_steps": 5, "sim_backend": "cpu",
              "mani_skill": "3.0.1", "sapien": "3.0.3"}


def task_spec(task: str, **changes) -> dict:
    """The contract's spec of a task of the suite in tasks/ (as bench.runner._contract flattens it)."""
    spec = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(load_suite().tasks[task]).items()
            if k != "id"}
    return {**spec, **changes}


def pi05_params(checkpoint: str, **changes) -> dict:
    return {"model": "pi05", "backend": "auto", "state_layout": "qpos8", "action_dim": 7, "dtype": "bfloat16",
            "cameras": {"base_0_rgb": "base_camera", "left_wrist_0_rgb": "hand_camera", "right_wrist_0_rgb": ""},
            "checkpoint": checkpoint, "tokenizer": "/models/paligemma_tokenizer.model", **changes}


def write_run(root: Path, run_id: str, outcomes: dict[str, list[bool]], *, preset: str = "random",
              plugin: str | None = None, params: dict | None = None, label: str | None = None,
              weights: str | None = None, evaluation: dict | None = None, specs: dict[str, dict] | None = None,
              created: str = "2026-11-01T00:00:00+00:00", contract: bool = True, videos: bool = False) -> Path:
    """A completed run of `preset` with the given success_once per task and episode index.

    `weights` makes it a checkpoint policy: describe() reports that checkpoint fingerprint (the hash of the weights)
    for `params["checkpoint"]`. `evaluation` and `specs` change the contract's evaluation settings and task specs."""
    params = params or {}
    plugin = plugin or ("pi" if weights else preset)
    policy = PolicyPreset(preset, plugin, "", params, f"policies/{preset}.toml")
    describe = {"name": preset, **params}
    if weights:
        describe["checkpoint_fingerprint"] = hashlib.sha256(weights.encode()).hexdigest()
    else:
        describe["version"] = "1"
    evaluation = {**EVALUATION, **(evaluation or {})}
    tasks = {task: {**task_spec(task), **(specs or {}).get(task, {})} for task in outcomes}
    manifest = {
        "run_id": run_id, "created": created, "bench_version": "0.1.0",
        "config": {"policy": preset, "tasks": ",".join(outcomes), "episodes": max(map(len, outcomes.values())),
                   "seed": evaluation["seed"], "label": label},
        "suite": {"version": evaluation["suite_version"], "fingerprint": "0" * 16,
                  "tasks": [{"id": task, **spec} for task, spec in tasks.items()]},
        "policy": {"name": preset, "label": label, "plugin": plugin, "preset": policy.source, "params": params,
                   "fingerprint": policy.fingerprint(), "describe": describe},
        "environments": {"backend": evaluation["sim_backend"], "why": "test", "num_envs": 2},
        "cluster": None,
        "packages": {"mani_skill": evaluation["mani_skill"], "sapien": evaluation["sapien"]},
        "git_revision": None, "host": {"hostname": "test"},
    }
    if contract:
        manifest["contract"] = {"evaluation": evaluation, "tasks": tasks,
                                "policy": {"preset": preset, "plugin": plugin,
                                           "preset_fingerprint": policy.fingerprint(), **describe}}
    writer = RunWriter(root / run_id, manifest)
    for task, successes in outcomes.items():
        for episode, success in zip(episodes_for(task, evaluation["seed"], len(successes)), successes):
            writer.append({
                "run_id": run_id, "policy": preset, "task": task, "episode": episode.index, "seed": episode.seed,
                "status": "ok", "error": None, "success_once": success, "success_at_end": success,
                "first_success_step": 10 if success else -1, "steps": tasks[task]["max_steps"],
                "return": 1.0 if success else 0.0, "wall_time_s": 1.0, "sim_time_s": 0.5, "policy_time_s": 0.5,
                "wave_size": 2, "lanes": 1, "retry": False,
                "video": f"videos/{task}/ep{episode.index}_{'success' if success else 'failure'}.mp4"
                if videos else None,
            })
    writer.finish("completed")
    return root / run_id
