"""Open-loop replay: the policy on dataset frames, through the same policy object and transforms as `bench run`,
against the recorded actions, beside the dataset's mean action as the baseline that gives "low" its scale.

What is shared with `bench run`: the Policy built from the preset (`build_policy`), `reset` with an
`EpisodeContext` per frame (the task spec's instruction, the episode's seed for the flow-matching noise) and `act`
on an observation shaped like the env's flattened obs, so every input step runs (cameras, resize_with_pad, state
layout, normalize, prompt, tokenize, pad) and every output step (unnormalize, action dims).
What is reconstructed: the env's obs from the frame. Images go back under `sensor_data/<camera>/rgb` for the
camera the dataset says each image came from (bench.json; a foreign dataset: the preset's mapping, assumed), at
the recorded size (already 224: resize_with_pad is then the identity). The raw simulator state comes from the
dataset's raw fields when it has them (`RAW_KEYS`); otherwise it is rebuilt by inverting the dataset's state layout
(`raw_from_state`), and what that layout does not determine is NaN: a preset layout that reads it fails here.
The same frames run once more with the state nudged (`nudge`): a policy whose actions jump has learned its training
states by heart (`sensitivity_finding`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.adapters import STATE_LAYOUTS
from bench.check.findings import FAIL, OK, WARN, Finding, fail, graded
from bench.check.spec import layout_name
from bench.policies import EpisodeContext, PolicyPreset, build_policy
from bench.tasks import Episode, TaskSpec

RAW_KEYS = ("agent/qpos", "extra/tcp_pose")  # simulator fields the state layouts read (adapters.STATE_LAYOUTS)
SKILL_OK = 0.5  # 1 - MSE / baseline MSE: the policy explains at least half of the actions' spread around the mean
BATCH = 8  # frames per `act` call
# State sensitivity: every state value nudged by this share of its dataset range [q01, q99] (about one of Pi0.5's
# 256 bins); the first action should barely move. Measured (docs/trained-policies.md, round 4; 16 frames of recorded
# PickCube / PushCube episodes): the committed small Pi0.5, which keys on its training states' exact bin tokens,
# moved 0.46 / 0.43 of the recorded actions' spread; Pi0 0.02 / 0.03; that Pi0.5 trained on with state noise 0.03 /
# 0.09: warn from 0.2.
STATE_NUDGE = 0.004
SENSITIVITY_WARN = 0.2


@dataclass(frozen=True)
class ReplayFrame:
    """One dataset frame to replay: its episode's task and seed, the images by simulator camera and the raw state,
    and the episode's recorded actions from this frame on (the targets of the chunk)."""

    task: TaskSpec
    episode: int
    seed: int
    images: dict[str, np.ndarray]  # simulator camera -> uint8 [H, W, 3]
    raw: dict[str, np.ndarray]  # RAW_KEYS -> float32 vector (NaN where unknown)
    future: np.ndarray  # float32 [T - t, A]: the frame's action and those after it


def select_frames(lengths: list[int], k: int) -> list[tuple[int, int]]:
    """k (episode position, frame) pairs spread evenly over all frames of all episodes."""
    starts = np.cumsum([0, *lengths])
    picks = np.unique(np.linspace(0, starts[-1] - 1, min(k, starts[-1])).round().astype(int))
    positions = np.searchsorted(starts, picks, side="right") - 1
    return [(int(p), int(g - starts[p])) for p, g in zip(positions, picks)]


def raw_from_state(state: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """The raw simulator fields a layout's state [N, D] came from; what the layout drops is NaN."""
    from scipy.spatial.transform import Rotation

    n = len(state)
    qpos, tcp = np.full((n, 9), np.nan, np.float32), np.full((n, 7), np.nan, np.float32)
    layout = layout_name(layout)
    if layout == "qpos":
        qpos[:] = state
    elif layout == "qpos8":
        qpos[:, :8] = state
    elif layout == "tcp_pos_quat_gripper":
        tcp[:], qpos[:, 7] = state[:, :7], state[:, 7]
    elif layout == "tcp_pos_axisangle_fingers":
        tcp[:, :3], qpos[:, 7:9] = state[:, :3], state[:, 6:8]
        tcp[:, 3:] = Rotation.from_rotvec(np.asarray(state[:, 3:6], np.float64)).as_quat(scalar_first=True)
    else:
        raise ValueError(f"no inverse for state layout {layout!r}")
    return {"agent/qpos": qpos, "extra/tcp_pose": tcp}


@dataclass(frozen=True)
class ActionErrors:
    """Per-dimension errors of predictions against recorded actions over `count` (prediction, target) pairs."""

    mae: np.ndarray
    mse: np.ndarray
    count: int

    @classmethod
    def of(cls, predicted: np.ndarray, target: np.ndarray) -> "ActionErrors":
        diff = np.asarray(predicted, np.float64) - np.asarray(target, np.float64)
        return cls(np.abs(diff).mean(0), (diff ** 2).mean(0), len(diff))

    def to_json(self) -> dict:
        return {"mae": self.mae.round(6).tolist(), "mse": self.mse.round(6).tolist(), "pairs": self.count}


def skill(policy_mse: float, baseline_mse: float) -> float:
    """1 - MSE / baseline MSE (R^2 against the mean action): 1 is perfect, 0 no better than the mean action."""
    if baseline_mse <= 0:
        return 1.0 if policy_mse <= 0 else -np.inf
    return 1.0 - policy_mse / baseline_mse


def replay_verdict(policy_mse: float, baseline_mse: float) -> str:
    """FAIL when the policy is not better than always answering the dataset's mean action; warn when it explains
    less than SKILL_OK of the actions' spread around that mean; ok otherwise."""
    score = skill(policy_mse, baseline_mse)
    return FAIL if score <= 0 else WARN if score < SKILL_OK else OK


def chunk_pairs(chunks: np.ndarray, frames: list[ReplayFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted, recorded, is_first) over every chunk step that has a recorded action: chunk step j of a frame
    against the episode's action j steps later."""
    predicted, target, first = [], [], []
    for chunk, frame in zip(chunks, frames):
        n = min(len(chunk), len(frame.future))
        predicted.append(chunk[:n])
        target.append(frame.future[:n])
        first.append(np.arange(n) == 0)
    return np.concatenate(predicted), np.concatenate(target), np.concatenate(first)


def observations(frames: list[ReplayFrame]) -> dict[str, np.ndarray]:
    """The frames as one flattened env observation (a row per frame)."""
    keys = {f"sensor_data/{camera}/rgb" for frame in frames for camera in frame.images}
    obs = {key: np.stack([frame.images[key.split("/")[1]] for frame in frames]) for key in sorted(keys)}
    obs.update({key: np.stack([frame.raw[key] for frame in frames]) for key in RAW_KEYS})
    return obs


def readable(layout: str, raw: dict[str, np.ndarray]) -> bool:
    """Whether `layout` finds every value it reads in a reconstructed raw state (NaN marks what is unknown; the
    axis-angle layout's rotation conversion refuses NaN quaternions)."""
    try:
        return bool(np.isfinite(STATE_LAYOUTS[layout](raw)).all())
    except ValueError:
        return False


def run_policy(preset: PolicyPreset, frame_sets: list[list[ReplayFrame]], bounds: dict[str, tuple],
               seed: int) -> list[np.ndarray]:
    """Action chunks [K, H, A] per set of frames, as `bench run` would compute them for these observations; one
    policy for all the sets (each frame's `reset` reseeds its slot's noise from the episode, so the sets share it)."""
    policy = build_policy(preset, num_slots=min(BATCH, max(map(len, frame_sets))), seed=seed)
    out = []
    for frames in frame_sets:
        chunks = []
        for start in range(0, len(frames), BATCH):
            batch = frames[start:start + BATCH]
            for slot, frame in enumerate(batch):
                low, high = bounds[frame.task.id]
                policy.reset(slot, EpisodeContext(frame.task, Episode(frame.task.id, frame.episode, frame.seed),
                                                  low, high))
            chunks.extend(policy.act(observations(batch), np.arange(len(batch))))
        out.append(np.stack(chunks))
    return out


def replay_findings(chunks: np.ndarray, frames: list[ReplayFrame], mean_action: np.ndarray) -> list[Finding]:
    """The policy's chunks against the recorded actions and against the mean-action baseline."""
    predicted, target, first = chunk_pairs(chunks, frames)
    if predicted.shape[1] != target.shape[1]:
        return [fail("open-loop replay", f"the policy emits {predicted.shape[1]}-D actions, the dataset holds "
                     f"{target.shape[1]}-D", "fix action_dim in the preset")]
    baseline = np.broadcast_to(mean_action, target.shape)
    results = {}
    for name, rows in (("first action", first), ("chunk", np.ones(len(first), bool))):
        results[name] = (ActionErrors.of(predicted[rows], target[rows]), ActionErrors.of(baseline[rows], target[rows]))
    found = []
    for name, (policy, base) in results.items():
        score = skill(float(policy.mse.mean()), float(base.mse.mean()))
        worst = int(np.argmax(policy.mse - base.mse))
        detail = (f"MSE {policy.mse.mean():.4g} vs mean action {base.mse.mean():.4g} (skill {score:.2f}; ok >= "
                  f"{SKILL_OK}), MAE {policy.mae.mean():.4g} vs {base.mae.mean():.4g}, {policy.count} actions of "
                  f"{len(frames)} frames; worst dim {worst}")
        found.append(graded(f"open-loop replay: {name}", replay_verdict(float(policy.mse.mean()),
                                                                       float(base.mse.mean())), detail,
                            "the policy does not reproduce the dataset's actions: check the spec gate above, the "
                            "checkpoint, and that this dataset is what it was trained on",
                            policy=policy.to_json(), mean_action=base.to_json(), skill=score))
    return found


def nudge(states: np.ndarray, spread: np.ndarray, seed: int) -> np.ndarray:
    """`states` [N, D] with each value moved by STATE_NUDGE of its dimension's `spread`, up or down at random."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=states.shape)
    return (states + signs * STATE_NUDGE * spread).astype(np.float32)


def sensitivity_finding(chunks: np.ndarray, nudged_chunks: np.ndarray, frames: list[ReplayFrame],
                        mean_action: np.ndarray) -> Finding:
    """How far the first action moves when the state moves by a hair (`nudge`), against the recorded first actions'
    spread around the mean action. A policy whose actions jump has learned its training states by heart (Pi0.5's
    state is a row of bin tokens in its prompt, which a small dataset lets it use as keys): open-loop replay on its
    own frames looks fine, and closed loop, where no state is exactly a training state, fails."""
    first = np.stack([frame.future[0] for frame in frames]).astype(np.float64)
    dim = first.shape[1]
    change = float(np.sqrt(((nudged_chunks[:, 0, :dim] - chunks[:, 0, :dim]) ** 2).mean()))
    spread = float(np.sqrt(((first - mean_action) ** 2).mean()))
    ratio = change / spread if spread > 0 else 0.0
    detail = (f"the state moved by {STATE_NUDGE:.1%} of its range moves the first action by {change:.3g} RMS, "
              f"{ratio:.2f} of the recorded actions' spread ({spread:.3g}; warn >= {SENSITIVITY_WARN}), "
              f"{len(frames)} frames" + ("; the policy does not read the state (e.g. Pi0.5 with discrete_state_input "
                                         "= false)" if change == 0 else ""))
    return graded("state sensitivity", WARN if ratio >= SENSITIVITY_WARN else OK, detail,
                  "the policy's actions jump with a hair of state: it has learned the training states by heart and "
                  "will fail where closed loop leaves them; train with state noise (scripts/train_small_pi.py "
                  "--state-noise) or on more varied data", change=change, spread=spread, ratio=ratio)
