"""What the Pi0 / Pi0.5 policy and its backends share: the model's constants, a batch of model inputs, the backend
interface, and the checks of what crosses it.

Backends import this module, never `bench.policies.pi`; the policy picks a backend by name (`pi.BACKENDS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

MODELS = ("pi0", "pi05")
MODEL_DIM = 32  # Pi models pad state and action vectors to 32 dims
IMAGE_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")  # openpi's camera keys, in openpi's order
DEFAULT_CAMERAS = dict(zip(IMAGE_KEYS, ("base_camera", "hand_camera", None)))  # a preset's [params.cameras] default
IMAGE_SIZE = 224  # images enter the model at 224 x 224
MAX_TOKEN_LEN = {"pi0": 48, "pi05": 200}  # openpi's and lerobot's defaults (Pi0.5's prompt carries the state)
STATE_BINS = 256  # Pi0.5 writes the normalized state into the prompt in 256 bins over [-1, 1]


@dataclass
class PiInputs:
    """One batch of model inputs, built by the transforms (`pi_transforms`); what every backend's `sample_actions`
    takes."""

    images: dict[str, np.ndarray]  # IMAGE_KEYS: uint8 [B, 224, 224, 3]
    image_masks: dict[str, np.ndarray]  # same keys: bool [B]; False = camera absent (black image)
    state: np.ndarray  # float32 [B, 32]: normalized, zero-padded
    tokens: np.ndarray  # int64 [B, L]: PaliGemma token ids, zero-padded
    token_masks: np.ndarray  # bool [B, L]

    def take(self, rows: slice | np.ndarray) -> "PiInputs":
        """The same inputs for a subset of the batch rows."""
        return PiInputs({k: v[rows] for k, v in self.images.items()}, {k: v[rows] for k, v in self.image_masks.items()},
                        self.state[rows], self.tokens[rows], self.token_masks[rows])


class PiBackend(Protocol):
    """A Pi0 / Pi0.5 network: normalized inputs in, normalized (model-space) action chunks out."""

    action_horizon: int  # actions per chunk
    num_steps: int  # flow-matching denoising steps
    max_token_len: int  # prompt tokens the model takes

    def sample_actions(self, inputs: PiInputs, noise: np.ndarray | None = None) -> np.ndarray:
        """One batched forward -> float32 [B, action_horizon, MODEL_DIM]; `noise` is the flow-matching sample at
        t=1 ([B, action_horizon, MODEL_DIM]); without it the backend draws its own from its seed."""

    def fingerprint(self) -> str:
        """What identifies the weights: a hash of the checkpoint's files, or a label for random weights."""

    def save(self, path: Path) -> None:
        """Writes a checkpoint folder that the backend loads again."""


def check_model_dim(what: str, dim: int) -> None:
    """A model whose state or action vectors are not MODEL_DIM wide does not fit bench's padding."""
    if dim != MODEL_DIM:
        raise ValueError(f"{what} is {dim}, bench pads state and actions to {MODEL_DIM}")


def check_state(state: np.ndarray, batch: int) -> np.ndarray:
    """`state` as float32 [batch, MODEL_DIM], or a ValueError."""
    state = np.asarray(state, np.float32)
    if state.shape != (batch, MODEL_DIM):
        raise ValueError(f"state: expected float32 {(batch, MODEL_DIM)}, got {state.shape}")
    return state


def check_noise(noise: np.ndarray | None, batch: int, horizon: int) -> np.ndarray | None:
    """`noise` as float32 [batch, horizon, MODEL_DIM] (None stays None: the backend draws it), or a ValueError."""
    if noise is None:
        return None
    noise = np.asarray(noise, np.float32)
    if noise.shape != (batch, horizon, MODEL_DIM):
        raise ValueError(f"noise: expected {(batch, horizon, MODEL_DIM)}, got {noise.shape}")
    return noise
