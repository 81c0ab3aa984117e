"""What produced a run (the manifest) and what must agree for two results to be comparable (the contract).

The evaluation contract holds everything that can change a result, in flat `key: value` form:
`evaluation` (suite version, run seed, replan steps, simulator versions), `tasks` (each task's spec and the physics
backend it ran on) and `policy` (preset, plugin, fingerprints, the policy's own description). `differences()` is the
one comparison used by `--resume` (everything must match), `bench compare` and the `--baseline` gate (evaluation and
the common tasks; the policy is what they compare) and Ray shards (everything but where files are).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench import __version__
from bench.config import RunConfig
from bench.errors import BenchError
from bench.policies import PolicyPreset
from bench.tasks import Episode, TaskSpec, TaskSuite, result_view

RECORDED_PACKAGES = ("bench", "mani_skill", "sapien", "gymnasium", "torch", "numpy",
                     "lerobot", "transformers", "jax", "rpent-openpi", "sentencepiece", "ray")  # what Pi results depend on
LOCATION_KEYS = ("checkpoint", "tokenizer", "norm_stats", "server")
"""Policy settings that say where something is, not what it is (its fingerprint says that): a Ray shard may find
the checkpoint under another path."""


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def host() -> dict:
    return {"hostname": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "user": getpass.getuser()}


def flat(value, prefix: str = "") -> dict:
    """Nested dicts as dotted keys, tuples as lists: JSON values that compare equal after a round trip."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def as_json(data: dict) -> dict:
    return json.loads(json.dumps(data, default=str))


def episodes_digest(episodes: dict[str, list[Episode]]) -> str:
    """What identifies a `--episodes-from` dataset's episodes: a hash of its (task id, seed) list, in order."""
    pairs = [[e.task, e.seed] for task in episodes.values() for e in task]
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def build(config: RunConfig, suite_version: str, tasks: list[TaskSpec], preset: PolicyPreset | None,
          description: dict | None, backends: dict[str, str] | None, packages: dict[str, str],
          episodes_from: str | None = None) -> dict:
    """The contract of a run. Before the run starts, `preset`, `description` and `backends` may be None: the
    static part (settings and task specs), which a `--baseline` can be checked against before any worker starts.
    `episodes_from`: the `episodes_digest` of a `--episodes-from` dataset (the key exists only then, so contracts of
    runs on bench's evaluation seeds are unchanged)."""
    contract = {
        "evaluation": {"suite_version": suite_version, "seed": config.seed, "replan_steps": config.replan_steps,
                       "mani_skill": packages["mani_skill"], "sapien": packages["sapien"]},
        "tasks": {t.id: flat(result_view(t)) for t in tasks},
    }
    if episodes_from is not None:
        contract["evaluation"]["episodes_from"] = episodes_from
    if backends is not None:
        for task in tasks:
            contract["tasks"][task.id]["sim_backend"] = backends[task.id]
    if preset is not None:
        contract["policy"] = {"preset": preset.name, "plugin": preset.plugin,
                              "preset_fingerprint": preset.fingerprint(), **flat(description or {})}
    return as_json(contract)


def manifest(config: RunConfig, run_id: str, suite: TaskSuite, tasks: list[TaskSpec], preset: PolicyPreset,
             description: dict, backends: dict[str, str], why: dict[str, str], num_envs: int,
             packages: dict[str, str], cluster: dict | None, episodes_from: dict | None = None) -> dict:
    """What produced the run, so that any number can be traced back and two runs checked for comparability.
    `packages` are those of the processes that ran the episodes (Ray shards are checked to agree);
    `episodes_from` ({dataset, digest, episodes per task}) only for a `--episodes-from` run."""
    digest = episodes_from["digest"] if episodes_from else None
    return as_json({
        "run_id": run_id, "created": datetime.now(timezone.utc).isoformat(),
        "bench_version": __version__, "config": {**asdict(config), "num_envs_used": num_envs},
        "suite": {"version": suite.version, "fingerprint": suite.fingerprint(tasks),
                  "tasks": [asdict(t) for t in tasks]},
        "policy": {"name": preset.name, "label": config.label, "plugin": preset.plugin, "preset": preset.source,
                   "params": preset.params, "fingerprint": preset.fingerprint(), "describe": description},
        "environments": {"backends": backends, "why": why, "num_envs": num_envs},
        "cluster": cluster,
        "contract": build(config, suite.version, tasks, preset, description, backends, packages, digest),
        "packages": packages, "git_revision": git_revision(), "host": host(),
        **({"episodes_from": episodes_from} if episodes_from else {}),
    })


def _upgraded(contract: dict) -> dict:
    """A contract in today's form. Runs written before backends were planned per task recorded one
    `evaluation.sim_backend` for the whole run: it becomes each task's `sim_backend`, so those runs (stored
    baselines among them) still compare equal to new ones that ran the same way."""
    evaluation = dict(contract.get("evaluation", {}))
    backend = evaluation.pop("sim_backend", None)
    tasks = {task: ({"sim_backend": backend, **spec} if backend is not None else spec)
             for task, spec in contract.get("tasks", {}).items()}
    return {**contract, "evaluation": evaluation, "tasks": tasks}


def differences(a: dict, b: dict, tasks: Iterable[str] | None = None, policy: bool = False,
                ignore: Iterable[str] = ()) -> list[str]:
    """`key: A != B` for every result-changing setting two contracts disagree on: the evaluation settings, the
    specs of `tasks` (default: every task either ran), with `policy` the policy's too; keys whose last part is in
    `ignore` are left out. Static contracts (no backend or policy yet) compare only what they hold."""
    a, b = _upgraded(a), _upgraded(b)
    sections = {"evaluation": (a["evaluation"], b["evaluation"])}
    for task in (tasks if tasks is not None else {**a["tasks"], **b["tasks"]}):
        ta, tb = a["tasks"].get(task, {}), b["tasks"].get(task, {})
        if "sim_backend" not in ta or "sim_backend" not in tb:  # one side is static: its backend is not planned yet
            ta, tb = ({k: v for k, v in t.items() if k != "sim_backend"} for t in (ta, tb))
        sections[f"tasks.{task}"] = (ta, tb)
    if policy and "policy" in a and "policy" in b:
        sections["policy"] = (a["policy"], b["policy"])
    found = []
    for section, (sa, sb) in sections.items():
        for key in {**sa, **sb}:
            if key.rsplit(".", 1)[-1] not in ignore and sa.get(key) != sb.get(key):
                found.append(f"{section}.{key}: {json.dumps(sa.get(key))} != {json.dumps(sb.get(key))}")
    return found


def manifest_differences(a: dict, b: dict, tasks: Iterable[str]) -> list[str]:
    """`differences` of two run manifests over their common `tasks`; a run that predates contracts cannot be
    shown to match anything."""
    if "contract" not in a or "contract" not in b:
        old = " and ".join(name for name, m in (("A", a), ("B", b)) if "contract" not in m)
        return [f"{old}: written before bench recorded evaluation contracts, so nothing shows the runs used the "
                "same settings"]
    return differences(a["contract"], b["contract"], tasks)


def check_shard(run_contract: dict, run_packages: dict, shard_contract: dict, shard_packages: dict,
                node: dict) -> None:
    """A Ray shard must evaluate exactly as the run's first shard did: same settings, task specs, physics backend,
    policy and checkpoint fingerprints, and package versions (paths and hosts may differ)."""
    found = differences(run_contract, shard_contract, policy=True, ignore=LOCATION_KEYS)
    found += [f"packages.{name}: {json.dumps(run_packages.get(name))} != {json.dumps(shard_packages.get(name))}"
              for name in {**run_packages, **shard_packages} if run_packages.get(name) != shard_packages.get(name)]
    if found:
        raise BenchError(f"the Ray shard on node {node.get('host')} ({node.get('node_id', '?')[:12]}) would not "
                         "evaluate what the run's other shards do:\n  " + "\n  ".join(found) +
                         "\ninstall the same packages and checkpoint on every node, or leave that node out of the cluster")
