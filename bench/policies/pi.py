"""`pi0` / `pi05`: Physical Intelligence's models in process, on the lerobot (PyTorch) or openpi (JAX) backend.

The policy composes bench's adapters around a backend that only runs the network:
ManiSkill obs -> camera map + resize-with-pad -> state layout -> normalize -> (Pi0.5: bins in the prompt)
-> tokenize -> backend.sample_actions (one batched forward) -> un-normalize -> controller's action dims.
Everything a result depends on is checked before the first episode (preflight) and reported by `describe`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.adapters import STATE_LAYOUTS, STATE_WIDTHS, clean_prompt, pad_to, pi05_prompt, pi_images
from bench.errors import BenchError
from bench.policies import EpisodeContext, Obs, Policy
from bench.policies.pi_checkpoint import detect_backend, find_norm_stats, lerobot_uses_quantiles, load_norm_stats
from bench.tasks import TaskSpec

MODELS = ("pi0", "pi05")
BACKENDS = ("lerobot", "openpi")  # and "auto": from the checkpoint's layout
MODEL_DIM = 32  # Pi models pad state and action vectors to 32 dims
DEFAULT_CAMERAS = {"base_0_rgb": "base_camera", "left_wrist_0_rgb": "hand_camera", "right_wrist_0_rgb": None}


@dataclass
class PiInputs:
    """One batch of model inputs, built by the adapters; what every backend's `sample_actions` takes."""

    images: dict[str, np.ndarray]  # base_0_rgb, left_wrist_0_rgb, right_wrist_0_rgb: uint8 [B, 224, 224, 3]
    image_masks: dict[str, np.ndarray]  # same keys: bool [B]; False = camera absent (black image)
    state: np.ndarray  # float32 [B, 32]: normalized, zero-padded
    tokens: np.ndarray  # int64 [B, L]: PaliGemma token ids, zero-padded
    token_masks: np.ndarray  # bool [B, L]

    def take(self, rows: slice | np.ndarray) -> "PiInputs":
        """The same inputs for a subset of the batch rows."""
        return PiInputs({k: v[rows] for k, v in self.images.items()}, {k: v[rows] for k, v in self.image_masks.items()},
                        self.state[rows], self.tokens[rows], self.token_masks[rows])


class PromptTokenizer:
    """PaliGemma SentencePiece tokenization as openpi does it (Pi0: prompt + "\\n"; Pi0.5: the full text)."""

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


BACKEND_SETUP = {
    "lerobot": "pip install -e '.[lerobot]' (lerobot 0.6.1)",
    "openpi": "run bench from the openpi environment: bash scripts/setup-openpi-env.sh, then .venv-openpi/bin/python",
}


def build_backend(model: str, backend: str, checkpoint: Path | None, tiny: bool = False, dtype: str = "bfloat16",
                  seed: int = 0, **options):
    """The model backend; missing packages and checkpoint problems become one-line BenchErrors."""
    try:
        if backend == "lerobot":
            from bench.policies.pi_lerobot import LerobotPiBackend as Backend
        elif backend == "openpi":
            from bench.policies.pi_openpi import OpenpiPiBackend as Backend
        else:
            raise BenchError(f"unknown backend '{backend}': one of {', '.join(BACKENDS)}")
    except ImportError as e:
        raise BenchError(f"--backend {backend} is not importable here ({e}): {BACKEND_SETUP[backend]}") from None
    try:
        return Backend(model, checkpoint, tiny=tiny, dtype=dtype, seed=seed, **options)
    except (FileNotFoundError, ValueError) as e:
        raise BenchError(str(e)) from None


def resolve_backend(backend: str, checkpoint: Path | None) -> str:
    """"auto" -> the backend the checkpoint's layout belongs to; without a checkpoint, lerobot if importable."""
    if backend != "auto":
        return backend
    if checkpoint is not None:
        detected = detect_backend(checkpoint)
        if detected is None:
            raise BenchError(f"{checkpoint} is neither an openpi checkpoint (no params/) nor a lerobot one (no "
                             "config.json): pass the checkpoint's step folder, or --backend")
        return detected
    import importlib.util

    return "lerobot" if importlib.util.find_spec("lerobot") else "openpi"


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class PiPolicy(Policy):
    """Pi0 or Pi0.5; parameters come from a preset (policies/pi0.toml, pi05.toml) and the command line."""

    overlap = True  # the network runs in torch/XLA kernels that release the GIL: simulate beside them

    def __init__(self, num_slots: int, seed: int = 0, model: str = "pi05", backend: str = "auto",
                 checkpoint: str | None = None, tokenizer: str | None = None, norm_stats: str | None = None,
                 asset_id: str | None = None, cameras: dict[str, str] | None = None, state_layout: str = "qpos8",
                 action_dim: int = 7, dtype: str = "bfloat16", action_horizon: int | None = None,
                 num_steps: int | None = None, tiny: bool = False, random_init: bool = False, device: str = "auto"):
        if model not in MODELS or backend not in (*BACKENDS, "auto"):
            raise BenchError(f"unknown model '{model}' or backend '{backend}': models {MODELS}, backends "
                             f"{(*BACKENDS, 'auto')}")
        if state_layout not in STATE_LAYOUTS:
            raise BenchError(f"unknown state_layout '{state_layout}': one of {', '.join(STATE_LAYOUTS)}")
        if not (tiny or random_init or checkpoint):
            raise BenchError(f"{model} needs a checkpoint: pass --checkpoint PATH")
        ckpt = Path(checkpoint) if checkpoint else None
        if ckpt is not None and not ckpt.is_dir():
            raise BenchError(f"checkpoint folder not found: {ckpt}")
        if not tokenizer or not Path(tokenizer).is_file():
            raise BenchError(f"PaliGemma tokenizer not found at {tokenizer}: pass --tokenizer path/to/paligemma_tokenizer.model")
        if not norm_stats and ckpt is None:
            raise BenchError("no norm stats: pass --norm-stats path/to/norm_stats.json")
        backend = resolve_backend(backend, ckpt)
        norm_stats = str(Path(norm_stats) if norm_stats else find_norm_stats(ckpt, asset_id))
        use_quantiles = lerobot_uses_quantiles(ckpt) if backend == "lerobot" else None
        use_quantiles = model == "pi05" if use_quantiles is None else use_quantiles  # openpi: Pi0.5 <=> quantiles
        self.name = model
        self._seed = seed
        self._model, self._state_layout, self._action_dim = model, state_layout, action_dim
        self._cameras = {**DEFAULT_CAMERAS, **{k: (v or None) for k, v in (cameras or {}).items()}}
        self._norm = load_norm_stats(Path(norm_stats), use_quantiles)
        options = {"random_init": True} if random_init else {}  # full-size random weights: throughput benchmarks
        if backend == "lerobot":
            options["device"] = _torch_device(device)
            if action_horizon or num_steps:
                raise BenchError("action_horizon / num_steps are openpi settings: a lerobot checkpoint's config.json "
                                 "has them (chunk_size, num_inference_steps); remove them from the preset")
        else:  # openpi checkpoints do not carry their model config: the preset says what training used
            options.update({k: v for k, v in (("action_horizon", action_horizon), ("num_steps", num_steps)) if v})
        self._backend = build_backend(model, backend, ckpt, tiny, dtype, seed, **options)
        self._tokenizer = PromptTokenizer(Path(tokenizer), self._backend.max_token_len)
        self._settings = {"model": model, "backend": backend, "checkpoint": checkpoint, "tokenizer": tokenizer,
                          "norm_stats": norm_stats, "normalization": "quantiles" if use_quantiles else "mean_std",
                          "cameras": self._cameras, "state_layout": state_layout,
                          "action_dim": action_dim, "dtype": dtype, "tiny": tiny, "random_init": random_init,
                          "device": options.get("device", device)}
        self._instructions: list[str | None] = [None] * num_slots
        self._noise: list[np.random.Generator | None] = [None] * num_slots

    def describe(self) -> dict:
        return {"name": self.name, **self._settings, "checkpoint_fingerprint": self._backend.fingerprint(),
                "action_horizon": self._backend.action_horizon, "denoising_steps": self._backend.num_steps,
                "max_token_len": self._backend.max_token_len}

    def check_task(self, task: TaskSpec) -> None:
        cameras = {c for c in self._cameras.values() if c}
        if not cameras <= set(task.cameras):
            raise BenchError(f"{self.name} reads cameras {sorted(cameras - set(task.cameras))} that {task.id} lacks")
        if task.control_mode != "pd_ee_delta_pose" or self._action_dim != 7:
            raise BenchError(f"action dimension mismatch: {self.name} emits {self._action_dim}-D actions, {task.id}'s "
                             f"controller {task.control_mode} takes 7; fix action_dim in the preset or the task file")
        stats_dims = {k: len(n.mean) for k, n in self._norm.items()}
        if stats_dims["actions"] < self._action_dim:
            raise BenchError(f"norm stats cover {stats_dims['actions']} action dims, the controller needs {self._action_dim}")
        if stats_dims["state"] != STATE_WIDTHS[self._state_layout]:
            raise BenchError(f"state layout '{self._state_layout}' gives {STATE_WIDTHS[self._state_layout]} dims, the "
                             f"norm stats {stats_dims['state']}: fix state_layout in the preset")

    def reset(self, slot: int, context: EpisodeContext) -> None:
        self._instructions[slot] = context.task.instruction
        # flow-matching noise from the episode's own seed: an episode's actions do not depend on which other
        # episodes share its batch, so resumed and re-batched runs replay it (up to float rounding)
        self._noise[slot] = np.random.default_rng([context.episode.seed, self._seed])

    def snapshot(self, slot: int) -> object:
        return copy.deepcopy(self._noise[slot])

    def restore(self, slot: int, state: object) -> None:
        self._noise[slot] = copy.deepcopy(state)

    def act(self, obs: Obs, slots: np.ndarray) -> np.ndarray:
        images, masks = pi_images(obs, self._cameras)
        raw_state = STATE_LAYOUTS[self._state_layout](obs).astype(np.float32)
        state = self._norm["state"].normalize(raw_state)
        instructions = [self._instructions[s] for s in slots]
        if self._model == "pi05":
            texts = [pi05_prompt(text, row) for text, row in zip(instructions, state)]
        else:
            texts = [clean_prompt(text) for text in instructions]
        tokens, token_masks = self._tokenizer(texts, pi0_format=self._model == "pi0")
        inputs = PiInputs(images, masks, pad_to(state, MODEL_DIM), tokens, token_masks)
        shape = (self._backend.action_horizon, MODEL_DIM)
        noise = np.stack([self._noise[s].standard_normal(shape, dtype=np.float32) for s in slots])
        actions = self._backend.sample_actions(inputs, noise=noise)
        return self._norm["actions"].unnormalize(actions)[:, :, : self._action_dim]
