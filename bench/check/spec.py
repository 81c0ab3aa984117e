"""The spec gate: what a preset, its checkpoint, a task and (when given) a dataset say, held against each other
without running a model. Each function returns findings; none raises on a mismatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.adapters import STATE_LAYOUT_ALIASES, STATE_WIDTHS
from bench.check.findings import Finding, fail, ok, warn
from bench.policies.pi_checkpoint import checkpoint_model
from bench.policies.pi_transforms import clean_prompt
from bench.policies.pi_types import DEFAULT_CAMERAS, IMAGE_KEYS, IMAGE_SIZE
from bench.tasks import TaskSpec

BOUND_SLACK = 1e-6  # float32 actions recorded at the controller's bound are not outside it


def layout_name(layout: str | None) -> str | None:
    return STATE_LAYOUT_ALIASES.get(layout, layout) if layout else layout


def preset_cameras(params: dict) -> dict[str, str]:
    """Pi image key -> ManiSkill camera the preset reads (absent cameras left out), as PiPolicy resolves them."""
    merged = {**DEFAULT_CAMERAS, **{k: (v or None) for k, v in (params.get("cameras") or {}).items()}}
    return {key: camera for key, camera in merged.items() if camera}


def model_check(model: str, checkpoint: Path | None) -> Finding:
    """A Pi0 preset on a Pi0.5 checkpoint (or the reverse): bench run refuses it when it loads the weights."""
    if checkpoint is None:
        return ok("model", f"{model}: no checkpoint (tiny or random weights)")
    found = checkpoint_model(checkpoint)
    if found is None:
        return warn("model", f"{checkpoint} does not say whether it holds pi0 or pi05", "make sure the preset's "
                    "model is the checkpoint's")
    if found != model:
        return fail("model", f"the preset says {model}, the checkpoint holds a {found} model",
                    f"use --policy {found} (or set model = \"{found}\" in your copy of the preset)")
    return ok("model", f"{model}, as the checkpoint says")


def norm_widths(layout: str, action_dim: int, norms: dict) -> list[Finding]:
    """The norm stats' widths against the preset's state layout and action dimension (what bench run refuses)."""
    state, actions = len(norms["state"].mean), len(norms["actions"].mean)
    found = []
    if state != STATE_WIDTHS[layout]:
        found.append(fail("norm stats widths", f"state layout {layout} gives {STATE_WIDTHS[layout]} dims, the norm "
                          f"stats have {state}", "fix state_layout in the preset (README: state layouts) or pass "
                          "the checkpoint's own --norm-stats"))
    if actions < action_dim:
        found.append(fail("norm stats widths", f"norm stats cover {actions} action dims, the preset emits "
                          f"{action_dim}", "fix action_dim in the preset or pass the checkpoint's --norm-stats"))
    return found or [ok("norm stats widths", f"state {state} = {layout}; actions {actions} >= {action_dim}")]


def task_checks(cameras: dict[str, str], action_dim: int, task: TaskSpec, low: np.ndarray) -> list[Finding]:
    """Cameras the preset reads against the task's; the preset's action dims against the controller's."""
    missing = sorted(set(cameras.values()) - set(task.cameras))
    found = [fail(f"cameras [{task.id}]", f"the preset reads {missing}, {task.id} renders {list(task.cameras)}",
                  "map the preset's [params.cameras] to the task's cameras") if missing else
             ok(f"cameras [{task.id}]", ", ".join(f"{c}->{k}" for k, c in cameras.items()))]
    if action_dim != len(low):
        found.append(fail(f"action dims [{task.id}]", f"the preset emits {action_dim}-D actions, {task.control_mode} "
                          f"takes {len(low)}", f"set action_dim = {len(low)} or use the control mode the policy "
                          "was trained with"))
    else:
        found.append(ok(f"action dims [{task.id}]", f"{action_dim} = {task.control_mode}"))
    return found


def dataset_cameras(cameras: dict[str, str], keys: dict, recorded: dict | None) -> Finding:
    """Every camera the preset reads has a dataset key and every dataset camera is read; with bench.json, each Pi
    key comes from the same simulator camera in both."""
    dataset = {key for key in IMAGE_KEYS if keys.get(key)}
    unread, absent = sorted(dataset - set(cameras)), sorted(set(cameras) - dataset)
    if unread or absent:
        return fail("dataset cameras", f"the preset reads {sorted(cameras)}, the dataset has {sorted(dataset)}"
                    + (f"; never read: {unread}" if unread else "") + (f"; not in the dataset: {absent}" if absent
                                                                       else ""),
                    "map the preset's [params.cameras] to the image keys the model was trained with")
    if recorded:
        moved = {key: (recorded.get(key), camera) for key, camera in cameras.items() if recorded.get(key) != camera}
        if moved:
            return fail("dataset cameras", "different cameras under the same keys: " + "; ".join(
                f"{key} recorded from {was}, the preset reads {now}" for key, (was, now) in moved.items()),
                        "set the preset's [params.cameras] to the cameras the dataset was recorded with")
    return ok("dataset cameras", ", ".join(f"{c}->{k} = {keys[k]}" for k, c in cameras.items()))


def image_sizes(keys: dict, features: dict, task: TaskSpec) -> Finding:
    """Dataset image shapes against the task's cameras: both are resized with padding to 224, so another aspect
    ratio pads differently (FAIL) and another size resamples differently (warn)."""
    task_h, task_w = task.image_size
    sizes = {key: tuple(features[keys[key]]["shape"][:2]) for key in IMAGE_KEYS if keys.get(key)}
    bad = {k: s for k, s in sizes.items() if abs(s[0] * task_w - s[1] * task_h) > 0}
    other = {k: s for k, s in sizes.items() if s != (task_h, task_w)}
    detail = ", ".join(f"{k} {s[0]}x{s[1]}" for k, s in sizes.items()) + f"; {task.id} renders {task_h}x{task_w}"
    if bad:
        return fail("image size", detail + ": another aspect ratio, so resize_with_pad pads differently",
                    "record (or set the task's image_size) with the training images' aspect ratio")
    if other:
        return warn("image size", detail + f", both resized to {IMAGE_SIZE}: different resampling blur",
                    f"set the task's image_size to the dataset's {next(iter(other.values()))}")
    return ok("image size", detail)


def state_spec(layout: str, width: int, recorded_layout: str | None) -> Finding:
    """The dataset's state width and (bench datasets) layout name against the preset's state_layout."""
    layout, recorded_layout = layout_name(layout), layout_name(recorded_layout)
    if width != STATE_WIDTHS[layout]:
        return fail("state", f"dataset state has {width} dims, the preset's {layout} {STATE_WIDTHS[layout]}",
                    f"set state_layout to the layout the dataset was recorded with ({recorded_layout or 'see its '
                    'recorder'})")
    if recorded_layout is None:
        return warn("state", f"{width} dims = {layout}; the dataset does not name its layout, and layouts of the "
                    "same width cannot be told apart", "check that the training state was " + layout)
    if recorded_layout != layout:
        return fail("state", f"the dataset was recorded with state layout {recorded_layout}, the preset uses "
                    f"{layout}", f"set state_layout = \"{recorded_layout}\" in your copy of the preset")
    return ok("state", f"{layout}, {width} dims")


def action_spec(actions: np.ndarray, action_dim: int, task: TaskSpec, low: np.ndarray, high: np.ndarray,
                recorded_mode: str | None) -> Finding:
    """The dataset's actions against the controller: dimension, range (normalized controllers take [-1, 1]) and,
    when the dataset says, its control mode."""
    width = actions.shape[1]
    if recorded_mode and recorded_mode != task.control_mode:
        return fail("actions", f"recorded with control mode {recorded_mode}, {task.id} runs {task.control_mode}",
                    "evaluate with the control mode the policy was trained with (the task file's control_mode)")
    if width != len(low) or width != action_dim:
        return fail("actions", f"dataset actions have {width} dims, the preset {action_dim}, {task.control_mode} "
                    f"{len(low)}", "train and evaluate with the same controller and action_dim")
    lo, hi = actions.min(0), actions.max(0)
    outside = np.flatnonzero((lo < low - BOUND_SLACK) | (hi > high + BOUND_SLACK))
    data = {"min": lo.tolist(), "max": hi.tolist(), "low": low.tolist(), "high": high.tolist()}
    if len(outside):
        dims = ", ".join(f"{d} [{lo[d]:.3g}, {hi[d]:.3g}]" for d in outside[:4])
        return fail("actions", f"actions outside {task.control_mode}'s bounds [{low.min():g}, {high.max():g}] in "
                    f"dims {dims}: recorded for another controller or scale", "record with the task's controller, "
                    "or rescale the training actions to its bounds", **data)
    return ok("actions", f"{width} dims within [{low.min():g}, {high.max():g}]", **data)


def fps_spec(fps: float, task: TaskSpec) -> Finding:
    if abs(fps - task.control_freq) > 1e-6:
        return fail("fps", f"dataset {fps:g} fps, {task.id} controls at {task.control_freq} Hz: each action "
                    "moves the arm for another time", f"set control_freq = {fps:g} in the task file (or record at "
                    f"{task.control_freq} Hz)")
    return ok("fps", f"{fps:g} = {task.id}'s control_freq")


def prompts(dataset_prompts: list[str], task: TaskSpec) -> Finding:
    """The dataset's task strings against the instruction bench sends (both cleaned as the prompt step does)."""
    sent = clean_prompt(task.instruction)
    other = sorted({p for p in dataset_prompts if clean_prompt(p) != sent})
    if other:
        return fail(f"prompt [{task.id}]", f"the dataset's prompt {other[0]!r} is not the instruction bench sends, "
                    f"{task.instruction!r}", f"set instruction in tasks/{task.id}.toml to the training prompt")
    return ok(f"prompt [{task.id}]", repr(task.instruction))
