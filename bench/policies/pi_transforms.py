"""ManiSkill observations -> Pi0 / Pi0.5 model inputs, and model actions -> controller actions, as named steps.

A pipeline is a visible list of small steps, each doing one thing (openpi's transforms.py is the model); the policy
composes them according to its preset and `PiPolicy.describe()` records their names, e.g. for Pi0.5:

    cameras(base_camera->base_0_rgb, hand_camera->left_wrist_0_rgb, none->right_wrist_0_rgb), resize_with_pad(224),
    state(qpos8), normalize(quantiles, openpi), prompt_with_state(256 bins), tokenize(200), pad_state(32)
    and after the model: unnormalize(quantiles, openpi), action_dims(7)

Each function below makes one step, named as it was made; input steps map a `Frame` (the observation, the prompts,
and the model inputs built so far) to a new one, output steps map action arrays. Each step can be held against
openpi's own code on its own (tests/openpi).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bench import adapters
from bench.policies.pi_normalize import Normalizer
from bench.policies.pi_types import IMAGE_KEYS, IMAGE_SIZE, STATE_BINS, PiInputs

Obs = dict[str, np.ndarray]


# --- the formulas --------------------------------------------------------------------------------------------------

def pad_to(x: np.ndarray, dim: int) -> np.ndarray:
    """Zero-pad the last axis to `dim` (Pi models use 32-D state and action vectors)."""
    if x.shape[-1] > dim:
        raise ValueError(f"vector of {x.shape[-1]} dims does not fit the model's {dim}")
    return np.concatenate([x, np.zeros((*x.shape[:-1], dim - x.shape[-1]), x.dtype)], axis=-1)


def discretize_state(normalized_state: np.ndarray, bins: int = STATE_BINS) -> np.ndarray:
    """Pi0.5 state tokens: `bins` equal bins over [-1, 1] (out-of-range values give -1 and bins - 1)."""
    return np.digitize(normalized_state, bins=np.linspace(-1, 1, bins + 1)[:-1]) - 1


def clean_prompt(instruction: str) -> str:
    return instruction.strip().replace("_", " ").replace("\n", " ")


def pi05_prompt(instruction: str, normalized_state: np.ndarray, bins: int = STATE_BINS) -> str:
    """Pi0.5 writes the discretized state into the text prompt."""
    state = " ".join(map(str, discretize_state(normalized_state, bins)))
    return f"Task: {clean_prompt(instruction)}, State: {state};\nAction: "


class PromptTokenizer:
    """PaliGemma SentencePiece tokenization as openpi does it (Pi0: prompt + "\\n"; Pi0.5: the full text), zero-padded
    or truncated to `max_len`."""

    def __init__(self, path: Path, max_len: int):
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.max_len = max_len

    def __call__(self, texts: list[str], pi0_format: bool) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.zeros((len(texts), self.max_len), np.int64)
        masks = np.zeros((len(texts), self.max_len), bool)
        for row, text in enumerate(texts):
            ids = self._sp.encode(text, add_bos=True) + (self._sp.encode("\n") if pi0_format else [])
            ids = ids[: self.max_len]
            tokens[row, : len(ids)] = ids
            masks[row, : len(ids)] = True
        return tokens, masks


# --- the steps -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """What flows through the input steps: the observation rows and their task prompts, then the model inputs as
    the steps fill them in (an absent camera's image stays None until `resize_with_pad` makes it black)."""

    obs: Obs
    prompts: list[str]
    images: dict[str, np.ndarray | None] = field(default_factory=dict)
    image_masks: dict[str, np.ndarray] = field(default_factory=dict)
    state: np.ndarray | None = None
    tokens: np.ndarray | None = None
    token_masks: np.ndarray | None = None

    @property
    def batch(self) -> int:
        return len(self.prompts)

    def inputs(self) -> PiInputs:
        missing = [key for key, image in self.images.items() if image is None]
        if missing or self.state is None or self.tokens is None:
            raise ValueError(f"the pipeline left model inputs unset (images {missing}, state, tokens)")
        return PiInputs(self.images, self.image_masks, self.state, self.tokens, self.token_masks)


@dataclass(frozen=True)
class Step:
    """One named transform: `name` is what a manifest records, and how the step was made (`resize_with_pad(224)`)."""

    name: str
    apply: Callable

    def __call__(self, value):
        return self.apply(value)


@dataclass(frozen=True)
class Pipeline:
    """Steps applied in order; `names` is what a manifest records."""

    steps: Sequence[Step]

    def __call__(self, value):
        for step in self.steps:
            value = step(value)
        return value

    def names(self) -> list[str]:
        return [step.name for step in self.steps]


def cameras(mapping: dict[str, str | None]) -> Step:
    """Camera images under Pi's keys: `mapping` is Pi key -> ManiSkill camera; None = absent (mask False)."""
    sources = {key: mapping.get(key) for key in IMAGE_KEYS}

    def apply(frame: Frame) -> Frame:
        return replace(frame, images={key: None if camera is None else frame.obs[f"sensor_data/{camera}/rgb"]
                                      for key, camera in sources.items()},
                       image_masks={key: np.full(frame.batch, camera is not None) for key, camera in sources.items()})

    pairs = ", ".join(f"{camera or 'none'}->{key}" for key, camera in sources.items())
    return Step(f"cameras({pairs})", apply)


def resize_with_pad(size: int) -> Step:
    """Every image to `size` x `size`, aspect ratio kept, black padding; an absent camera becomes a black image."""
    def apply(frame: Frame) -> Frame:
        black = (frame.batch, size, size, 3)
        return replace(frame, images={key: np.zeros(black, np.uint8) if image is None else
                                      adapters.resize_with_pad(image, size, size)
                                      for key, image in frame.images.items()})

    return Step(f"resize_with_pad({size})", apply)


def state(layout: str) -> Step:
    """The robot state vector of a layout (`adapters.STATE_LAYOUTS`), as float32."""
    pick = adapters.STATE_LAYOUTS[layout]
    layout = adapters.STATE_LAYOUT_ALIASES.get(layout, layout)  # recorded under the name that says what it is
    return Step(f"state({layout})", lambda frame: replace(frame, state=pick(frame.obs).astype(np.float32)))


def observation_steps(mapping: dict[str, str | None], layout: str) -> list[Step]:
    """What a Pi policy sees of an observation before normalization: its cameras at IMAGE_SIZE and its state. One
    list for `PiPolicy` and `bench record`, so a dataset holds exactly the images and state evaluation feeds."""
    return [cameras(mapping), resize_with_pad(IMAGE_SIZE), state(layout)]


def normalize(norm: Normalizer) -> Step:
    """The state, normalized with the checkpoint's statistics in its trainer's arithmetic (`norm.convention`), and
    kept in that arithmetic's dtype (openpi float64, lerobot float32): what Pi0.5 discretizes."""
    return Step(f"normalize({norm.name})",
                lambda frame: replace(frame, state=norm.normalize(frame.state.astype(norm.dtype))))


def prompt() -> Step:
    """Pi0's prompt: the task instruction, cleaned as openpi does (underscores and newlines become spaces)."""
    return Step("prompt", lambda frame: replace(frame, prompts=[clean_prompt(text) for text in frame.prompts]))


def prompt_with_state(bins: int = STATE_BINS) -> Step:
    """Pi0.5's prompt: the instruction and the normalized state in `bins` bins ("Task: ..., State: ...;\nAction: ")."""
    def apply(frame: Frame) -> Frame:
        return replace(frame, prompts=[pi05_prompt(text, row, bins) for text, row in zip(frame.prompts, frame.state)])

    return Step(f"prompt_with_state({bins} bins)", apply)


def tokenize(tokenizer: PromptTokenizer, pi0_format: bool) -> Step:
    """The prompts as PaliGemma token ids and masks; Pi0's format ends with a separately tokenized "\n"."""
    def apply(frame: Frame) -> Frame:
        tokens, masks = tokenizer(frame.prompts, pi0_format=pi0_format)
        return replace(frame, tokens=tokens, token_masks=masks)

    return Step(f"tokenize({tokenizer.max_len}{', pi0_format' if pi0_format else ''})", apply)


def pad_state(dim: int) -> Step:
    """The state zero-padded to the model's width, as the model's float32."""
    return Step(f"pad_state({dim})", lambda frame: replace(frame, state=pad_to(frame.state, dim).astype(np.float32)))


def unnormalize(norm: Normalizer) -> Step:
    """Model-space actions back to the controller's units, with the checkpoint's action statistics."""
    return Step(f"unnormalize({norm.name})", norm.unnormalize)


def action_dims(dim: int) -> Step:
    """The first `dim` action dims: the ones the controller takes."""
    return Step(f"action_dims({dim})", lambda actions: actions[..., :dim])
