"""`bench check`: explain a train/eval mismatch before an evaluation costs hours.

Order: inputs first (preset, policy files, tasks, dataset: a bad one is one line and exit 2, before anything is
built); then the spec gate (preset vs checkpoint vs task vs dataset, no model), sim vs dataset (the env reset to
the dataset's seeds), open-loop replay (the model on dataset frames) and its state sensitivity (the same frames with
the state nudged). Checks that need what was not given are reported as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.check import normstats, spec
from bench.check import replay as replay_check
from bench.check.findings import FAIL, Finding, fail, skipped
from bench.check.sim import TaskEnv, compare_first_frame, pipeline_view, remote_findings
from bench.doctor import probe_vulkan
from bench.errors import BenchError
from bench.policies import DEFAULT_PRESETS_DIR, PolicyPreset, build_policy, preflight_policy, resolve_preset
from bench.policies.pi_types import DEFAULT_CAMERAS
from bench.tasks import DEFAULT_TASKS_DIR, TaskSpec, load_suite

PLUGINS = ("pi", "remote")
SIM_EPISODES = 2  # episodes per task whose first frame is compared with the simulator's


@dataclass(frozen=True)
class CheckConfig:
    policy: str
    checkpoint: str | None = None
    tokenizer: str | None = None
    norm_stats: str | None = None
    backend: str | None = None
    server: str | None = None
    dataset: Path | None = None
    tasks: str | None = None
    episodes_k: int = 16
    seed: int = 0
    tasks_dir: Path = DEFAULT_TASKS_DIR
    presets_dir: Path = DEFAULT_PRESETS_DIR


@dataclass
class Episodes:
    """A dataset's episodes as the checks need them: per episode its task, seed, state and actions, the first
    frame's images and the images of the frames chosen for replay."""

    meta: list[dict]  # the reader's episode entries
    tasks: list[TaskSpec]
    seeds: list[int | None]
    prompts: list[str]
    states: list[np.ndarray]
    actions: list[np.ndarray]
    images: list[dict[int, dict[str, np.ndarray]]]  # episode -> frame -> Pi image key -> uint8 [H, W, 3]


def _inputs(config: CheckConfig):
    """Everything decided before anything is built; a BenchError (exit 2) for bad input."""
    if config.episodes_k <= 0:
        raise BenchError(f"--episodes-k must be positive, got {config.episodes_k}")
    preset = resolve_preset(config.policy, config.presets_dir).with_overrides(
        checkpoint=config.checkpoint, tokenizer=config.tokenizer, norm_stats=config.norm_stats,
        backend=config.backend, server=config.server)
    if preset.plugin not in PLUGINS:
        raise BenchError(f"bench check knows the {' and '.join(PLUGINS)} plugins; '{preset.name}' is a "
                         f"{preset.plugin} policy, which has no checkpoint or training data to check")
    preflight_policy(preset)
    suite = load_suite(config.tasks_dir)
    ds = None
    if config.dataset is not None:
        if preset.plugin != "pi":
            raise BenchError("--dataset checks a pi preset's checkpoint; drop --dataset for a remote preset")
        if not config.dataset.is_dir():
            raise BenchError(f"dataset folder not found: {config.dataset}")
        from bench.datasets.read import open_dataset

        ds = open_dataset(config.dataset)
    if ds is not None and config.tasks is None:
        ids = sorted({e.get("task_id") for e in ds.episodes} - {None})
        if not ids:
            raise BenchError(f"{config.dataset} does not say which bench task it holds: pass --tasks TASK_ID")
        missing = [i for i in ids if i not in suite.tasks]
        if missing:
            raise BenchError(f"{config.dataset} holds tasks {missing}, not in {config.tasks_dir}: pass --tasks-dir")
        tasks = [suite.tasks[i] for i in ids]
    else:
        tasks = suite.resolve(config.tasks or "all")
    if ds is not None and len(tasks) > 1 and any(e.get("task_id") is None for e in ds.episodes):
        raise BenchError(f"{config.dataset} does not record each episode's task: pass --tasks with the one task it holds")
    return preset, tasks, ds, (_dataset_keys(ds, preset) if ds is not None else None)


def _dataset_keys(ds, preset: PolicyPreset) -> dict[str, str]:
    """Pi image key / "state" / "actions" -> dataset key: bench.json's, or for a foreign dataset the preset's
    [dataset.<keys>] table whose keys the dataset has."""
    if ds.keys:
        return ds.keys
    from bench.datasets.layout import resolve_layout

    features = set(ds.info["features"])
    for name in preset.dataset:
        keys = resolve_layout(preset, name, None).key_map
        if set(keys.values()) <= features:
            return keys
    raise BenchError(f"{ds.root} was not recorded by bench and none of {preset.source}'s [dataset.<keys>] tables "
                     f"names its keys ({', '.join(sorted(features))}): add a table mapping them")


def _episodes(ds, keys: dict, tasks: list[TaskSpec], k: int) -> tuple[Episodes, list[tuple[int, int]]]:
    """The dataset's episodes of `tasks`, read once; and the (episode, frame) pairs to replay."""
    by_id = {t.id: t for t in tasks}
    chosen = [e for e in ds.episodes if e.get("task_id", tasks[0].id) in by_id]
    picks = replay_check.select_frames([int(e["length"]) for e in chosen], k)
    wanted: dict[int, set[int]] = {}
    for position, frame in picks:
        wanted.setdefault(position, set()).add(frame)
    image_keys = {key: keys[key] for key in spec.IMAGE_KEYS if keys.get(key)}
    out = Episodes([], [], [], [], [], [], [])
    for position, episode in enumerate(chosen):
        frames = ds.frames(int(episode["episode_index"]))
        out.meta.append(episode)
        out.tasks.append(by_id[episode.get("task_id", tasks[0].id)])
        out.seeds.append(episode.get("seed"))
        out.prompts.append(episode.get("task") or frames["task"][0])
        out.states.append(np.asarray(frames[keys["state"]], np.float32))
        out.actions.append(np.asarray(frames[keys["actions"]], np.float32))
        out.images.append({t: {pi: frames[key][t] for pi, key in image_keys.items()}
                           for t in {0} | wanted.get(position, set())})
    return out, picks


def _spec_with_dataset(preset: PolicyPreset, files, ds, keys: dict, data: Episodes,
                       envs: dict[str, TaskEnv]) -> list[Finding]:
    params = preset.params
    layout, action_dim = params.get("state_layout", "qpos8"), params.get("action_dim", 7)
    recorded = ds.bench or {}
    features = ds.info["features"]
    states, actions = np.concatenate(data.states), np.concatenate(data.actions)
    found = [spec.dataset_cameras(spec.preset_cameras(params), keys, recorded.get("layout", {}).get("cameras")),
             spec.state_spec(layout, states.shape[1], recorded.get("state_layout"))]
    for task in dict.fromkeys(data.tasks):
        env = envs[task.id]
        found += [spec.image_sizes(keys, features, task),
                  spec.action_spec(actions, action_dim, task, env.low, env.high, recorded.get("control_mode")),
                  spec.fps_spec(float(ds.info["fps"]), task),
                  spec.prompts([p for p, t in zip(data.prompts, data.tasks) if t == task], task)]
    horizon = (recorded.get("openpi_norm_stats") or {}).get("action_horizon") or params.get("action_horizon") or 50
    episodes = list(zip(data.states, data.actions))
    recomputed, noise = normstats.references(episodes, int(horizon)), normstats.sampling_noise(episodes)
    for key, exact_width in (("state", True), ("actions", False)):
        found.append(normstats.compare(key, files.normalizers[key], recomputed[key], exact_width, noise[key],
                                       len(episodes)))
    return found


def _sim_vs_dataset(preset: PolicyPreset, ds, keys: dict, data: Episodes, envs: dict[str, TaskEnv],
                    here: str) -> list[Finding]:
    """`here`: this machine's renderer, as `bench record` describes it."""
    params = preset.params
    image_keys = {key: keys[key] for key in spec.IMAGE_KEYS if keys.get(key)}
    cameras = {**DEFAULT_CAMERAS, **{k: (v or None) for k, v in (params.get("cameras") or {}).items()}}
    lossy = any(ds.info["features"][key]["dtype"] == "video" for key in image_keys.values())
    found, per_task = [], {}
    for position, (task, seed) in enumerate(zip(data.tasks, data.seeds)):
        if seed is None or per_task.get(task.id, 0) >= SIM_EPISODES:
            continue
        per_task[task.id] = per_task.get(task.id, 0) + 1
        recorded = data.meta[position].get("renderer") or (ds.bench or {}).get("renderer") or "unknown"
        view = pipeline_view(envs[task.id].first_obs(seed), cameras, params.get("state_layout", "qpos8"))
        found.append(compare_first_frame(f"{task.id} seed {seed}", view, data.images[position][0],
                                         data.states[position][0], recorded == here, lossy, recorded, here))
    return found or [skipped("sim vs dataset", "the dataset records no bench seeds (a foreign dataset)")]


def _replay(preset: PolicyPreset, ds, data: Episodes, picks, envs: dict[str, TaskEnv], seed: int) -> list[Finding]:
    recorded = ds.bench or {}
    layout = preset.params.get("state_layout", "qpos8")
    dataset_layout = recorded.get("state_layout") or layout  # a foreign dataset: assumed to be the preset's
    cameras = recorded.get("layout", {}).get("cameras") or spec.preset_cameras(preset.params)  # Pi key -> camera
    def frames_at(states: list[np.ndarray]) -> list[replay_check.ReplayFrame]:
        frames = []
        for (position, t), state in zip(picks, states):
            raw = {k: v[0] for k, v in replay_check.raw_from_state(state[None], dataset_layout).items()}
            seed_of = data.seeds[position] if data.seeds[position] is not None else position
            frames.append(replay_check.ReplayFrame(
                data.tasks[position], int(data.meta[position]["episode_index"]), int(seed_of),
                {cameras[key]: image for key, image in data.images[position][t].items()}, raw,
                data.actions[position][t:]))
        return frames

    states = np.stack([data.states[position][t] for position, t in picks])
    frames = frames_at(list(states))
    if not replay_check.readable(layout, replay_check.observations(frames[:1])):
        return [fail("open-loop replay", f"the preset's state layout {layout} reads simulator values the dataset's "
                     f"{dataset_layout} state does not hold", f"set state_layout = \"{dataset_layout}\"")]
    bounds = {task.id: (env.low, env.high) for task, env in ((t, envs[t.id]) for t in data.tasks)}
    all_states = np.concatenate(data.states)
    spread = np.quantile(all_states, 0.99, axis=0) - np.quantile(all_states, 0.01, axis=0)
    nudged = frames_at(list(replay_check.nudge(states, spread, seed)))
    try:
        chunks, nudged_chunks = replay_check.run_policy(preset, [frames, nudged], bounds, seed)
    except BenchError as e:
        return [fail("open-loop replay", f"the policy could not be built or run: {e}", "fix the FAIL above")]
    mean_action = np.concatenate(data.actions).mean(0)
    return [*replay_check.replay_findings(chunks, frames, mean_action),
            replay_check.sensitivity_finding(chunks, nudged_chunks, frames, mean_action)]


def check(config: CheckConfig) -> tuple[list[Finding], dict]:
    """Every check that the inputs allow; returns the findings and what was checked (for --json)."""
    preset, tasks, ds, keys = _inputs(config)
    context = {"policy": preset.name, "preset": preset.source, "params": preset.params,
               "dataset": str(config.dataset) if config.dataset else None,
               "dataset_version": ds.version if ds is not None else None, "tasks": [t.id for t in tasks]}
    envs = {t.id: TaskEnv.open(t) for t in tasks}
    try:
        if preset.plugin == "remote":
            return _remote(preset, tasks, envs), context
        from bench.policies.pi import PiPolicy

        params = preset.params
        files = PiPolicy.files(**params)
        layout, action_dim = params.get("state_layout", "qpos8"), params.get("action_dim", 7)
        model = spec.model_check(params.get("model", "pi05"), files.checkpoint)
        found = [model, *spec.norm_widths(layout, action_dim, files.normalizers)]
        for task in tasks:
            found += spec.task_checks(spec.preset_cameras(params), action_dim, task, envs[task.id].low)
        if ds is None:
            return found + [skipped(name, "no --dataset") for name in
                            ("dataset spec", "norm stats vs dataset", "sim vs dataset", "open-loop replay",
                                          "state sensitivity")], context
        data, picks = _episodes(ds, keys, tasks, config.episodes_k)
        context["renderer"] = probe_vulkan().describe()
        found += _spec_with_dataset(preset, files, ds, keys, data, envs)
        found += _sim_vs_dataset(preset, ds, keys, data, envs, context["renderer"])
        if model.verdict == FAIL:  # the weights would not load into the preset's model
            return found + [skipped(name, "the preset's model is not the checkpoint's")
                            for name in ("open-loop replay", "state sensitivity")], context
        return found + _replay(preset, ds, data, picks, envs, config.seed), context
    finally:
        for env in envs.values():
            env.close()


def _remote(preset: PolicyPreset, tasks: list[TaskSpec], envs: dict[str, TaskEnv]) -> list[Finding]:
    """One real observation per task to the server; an unreachable server is a BenchError, as in `bench run`."""
    from bench.policies.remote import LIBERO_KEYS

    policy = build_policy(preset, num_slots=1, seed=0)
    keys = preset.params.get("keys") or LIBERO_KEYS
    read = {source.split(":", 1)[1] for source in keys.values() if source.startswith("camera:")}
    found = []
    for task in tasks:
        missing = sorted(read - set(task.cameras))
        if missing:
            found.append(fail(f"cameras [{task.id}]", f"the preset sends cameras {missing}, which {task.id} does "
                              "not render", "fix [params.keys] in the preset"))
            continue
        found += remote_findings(policy, envs[task.id])
    return found + [skipped(name, "remote preset: no checkpoint or dataset to check")
                    for name in ("norm stats", "sim vs dataset", "open-loop replay", "state sensitivity")]
