"""`pi0` / `pi05`: Physical Intelligence's models in process, on the lerobot (PyTorch) or openpi (JAX) backend.

The policy composes named transforms (`pi_transforms`) around a backend that only runs the network:
ManiSkill obs -> cameras -> resize-with-pad -> state layout -> normalize -> prompt (Pi0.5: with the state in bins)
-> tokenize -> pad -> backend.sample_actions (one batched forward) -> un-normalize -> the controller's action dims.
Everything a result depends on is checked before the first episode (preflight) and reported by `describe`.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.adapters import STATE_LAYOUTS, STATE_WIDTHS
from bench.errors import BenchError
from bench.policies import EpisodeContext, Obs, Policy
from bench.policies.pi_checkpoint import (detect_backend, find_norm_stats, is_tiny, lerobot_uses_quantiles,
                                          load_norm_stats)
from bench.policies import pi_train_config
from bench.policies import pi_transforms as transforms
from bench.policies.pi_types import DEFAULT_CAMERAS, MODEL_DIM, MODELS, PiBackend
from bench.tasks import TaskSpec

# backend name -> "module:class" that runs the network, imported only when chosen (a backend never imports this
# module); tiny test models (`tiny = true`, or a checkpoint saved from one) have their own classes
BACKENDS = {"lerobot": "bench.policies.pi_lerobot:LerobotPiBackend",
            "openpi": "bench.policies.pi_openpi:OpenpiPiBackend"}
TINY_BACKENDS = {"lerobot": "bench.policies.pi_tiny:TinyLerobotPiBackend",
                 "openpi": "bench.policies.pi_openpi:TinyOpenpiPiBackend"}
BACKEND_SETUP = {
    "lerobot": "pip install -e '.[lerobot]' (lerobot 0.6.1)",
    "openpi": "run bench from the openpi environment: bash scripts/setup-openpi-env.sh, then .venv-openpi/bin/python",
}


def build_backend(model: str, backend: str, checkpoint: Path | None, tiny: bool = False, dtype: str = "bfloat16",
                  seed: int = 0, **options) -> PiBackend:
    """The model backend; missing packages and checkpoint problems become one-line BenchErrors."""
    if backend not in BACKENDS:
        raise BenchError(f"unknown backend '{backend}': one of {', '.join(BACKENDS)}")
    module, _, name = (TINY_BACKENDS if tiny else BACKENDS)[backend].partition(":")
    try:
        return getattr(importlib.import_module(module), name)(model, checkpoint, dtype=dtype, seed=seed, **options)
    except ImportError as e:  # the module, or what it imports when it builds the model (lerobot, openpi)
        raise BenchError(f"--backend {backend} is not importable here ({e}): {BACKEND_SETUP[backend]}") from None
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
    return "lerobot" if importlib.util.find_spec("lerobot") else "openpi"


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class PiFiles:
    """What the cheap checks settle: the backend, the checkpoint and its norm stats."""

    backend: str
    checkpoint: Path | None
    tiny: bool
    norm_stats: Path
    normalizers: dict  # "state", "actions" -> transforms.Normalizer


def _check_files(model: str, backend: str, checkpoint: str | None, tokenizer: str | None, norm_stats: str | None,
                 asset_id: str | None, state_layout: str, action_horizon: int | None, num_steps: int | None,
                 tiny: bool, random_init: bool, discrete_state_input: bool | None = None,
                 train_config: str | None = None, **_) -> PiFiles:
    """Every check that builds nothing: names, files, the checkpoint's layout and norm stats. Run before any env
    worker starts (`PiPolicy.preflight`), and again when the policy is built."""
    if model not in MODELS or backend not in (*BACKENDS, "auto"):
        raise BenchError(f"unknown model '{model}' or backend '{backend}': models {MODELS}, backends "
                         f"{(*BACKENDS, 'auto')}")
    if state_layout not in STATE_LAYOUTS:
        raise BenchError(f"unknown state_layout '{state_layout}': one of {', '.join(STATE_LAYOUTS)}")
    if model == "pi0" and discrete_state_input is not None:
        raise BenchError("discrete_state_input is a Pi0.5 setting (whether the state is written into the prompt); "
                         "Pi0 takes the state as a continuous input: remove it from the preset")
    if tiny and random_init:
        raise BenchError("tiny and random_init exclude each other: a tiny model's weights are random already")
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
    if backend == "lerobot" and (action_horizon or num_steps or train_config):
        raise BenchError("action_horizon / num_steps / train_config are openpi settings: a lerobot checkpoint's "
                         "config.json has them (chunk_size, num_inference_steps); remove them from the preset")
    if train_config:  # only that openpi is importable: reading the TrainConfig takes seconds (PiPolicy does it)
        pi_train_config.require_openpi()
    stats = Path(norm_stats) if norm_stats else find_norm_stats(ckpt, asset_id)
    use_quantiles = lerobot_uses_quantiles(ckpt) if backend == "lerobot" else None
    use_quantiles = model == "pi05" if use_quantiles is None else use_quantiles  # openpi: Pi0.5 <=> quantiles
    # (a lerobot config may set state and actions apart: lerobot_uses_quantiles then says per key)
    # the trainer's arithmetic: the backend reads the checkpoint its own trainer wrote (pi_normalize)
    normalizers = load_norm_stats(stats, use_quantiles, convention=backend)  # readable, with the keys it needs
    return PiFiles(backend, ckpt, tiny or (ckpt is not None and is_tiny(ckpt)), stats, normalizers)


class PiPolicy(Policy):
    """Pi0 or Pi0.5; parameters come from a preset (policies/pi0.toml, pi05.toml) and the command line."""

    overlap = True  # the network runs in torch/XLA kernels that release the GIL: simulate beside them

    def __init__(self, num_slots: int, seed: int = 0, model: str = "pi05", backend: str = "auto",
                 checkpoint: str | None = None, tokenizer: str | None = None, norm_stats: str | None = None,
                 asset_id: str | None = None, cameras: dict[str, str] | None = None, state_layout: str = "qpos8",
                 action_dim: int = 7, dtype: str = "bfloat16", action_horizon: int | None = None,
                 num_steps: int | None = None, tiny: bool = False, random_init: bool = False, device: str = "auto",
                 discrete_state_input: bool | None = None, train_config: str | None = None):
        files = _check_files(model, backend, checkpoint, tokenizer, norm_stats, asset_id, state_layout,
                             action_horizon, num_steps, tiny, random_init, discrete_state_input, train_config)
        max_token_len = None
        if train_config:  # what the openpi checkpoint does not record: from the TrainConfig it was trained with
            train = pi_train_config.load(train_config)
            pi_train_config.check_preset(train, model, action_horizon, discrete_state_input)
            action_horizon, max_token_len = train.action_horizon, train.max_token_len
            discrete_state_input = train.discrete_state_input if model == "pi05" else None
        # Pi0.5 writes the state into its prompt unless trained without (openpi's pi05_libero:
        # discrete_state_input=False, the prompt then in Pi0's format); Pi0 never does
        state_in_prompt = model == "pi05" and discrete_state_input is not False
        backend, tiny, norm_stats = files.backend, files.tiny, str(files.norm_stats)
        self.name = model
        self._seed = seed
        self._state_layout, self._action_dim = state_layout, action_dim
        self._cameras = {**DEFAULT_CAMERAS, **{k: (v or None) for k, v in (cameras or {}).items()}}
        self._norm = files.normalizers
        options = {"random_init": True} if random_init else {}  # full-size random weights: throughput benchmarks
        if backend == "lerobot":
            options["device"] = _torch_device(device)
        else:  # openpi checkpoints do not carry their model config: the preset says what training used
            options.update({k: v for k, v in (("action_horizon", action_horizon), ("num_steps", num_steps),
                                              ("max_token_len", max_token_len)) if v})
        self._backend = build_backend(model, backend, files.checkpoint, tiny, dtype, seed, **options)
        tokenizer_model = transforms.PromptTokenizer(Path(tokenizer), self._backend.max_token_len)
        self._inputs = transforms.Pipeline([
            *transforms.observation_steps(self._cameras, state_layout), transforms.normalize(self._norm["state"]),
            transforms.prompt_with_state() if state_in_prompt else transforms.prompt(),
            transforms.tokenize(tokenizer_model, pi0_format=not state_in_prompt), transforms.pad_state(MODEL_DIM)])
        self._outputs = transforms.Pipeline([transforms.unnormalize(self._norm["actions"]),
                                             transforms.action_dims(action_dim)])
        self._settings = {"model": model, "backend": backend, "checkpoint": checkpoint, "train_config": train_config,
                          "tokenizer": tokenizer,
                          "norm_stats": norm_stats, "normalization": self._norm["state"].kind,
                          "normalization_convention": self._norm["state"].convention,
                          "discrete_state_input": state_in_prompt if model == "pi05" else None,
                          "cameras": self._cameras, "state_layout": state_layout,
                          "action_dim": action_dim, "dtype": dtype, "tiny": tiny, "random_init": random_init,
                          "device": options.get("device", device), "transforms": self._inputs.names(),
                          "output_transforms": self._outputs.names()}
        self._instructions: list[str | None] = [None] * num_slots
        self._noise: list[np.random.Generator | None] = [None] * num_slots

    @classmethod
    def preflight(cls, **params) -> None:
        cls.files(**params)

    @classmethod
    def files(cls, **params) -> PiFiles:
        """What preflight settles from a preset's [params] (backend, checkpoint, the norm stats as the policy
        normalizes with them), without building anything: `bench check` compares them with a dataset."""
        bound = inspect.signature(cls).bind(num_slots=1, seed=0, **params)
        bound.apply_defaults()  # the preset's [params] over __init__'s defaults
        return _check_files(**bound.arguments)

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
        self._instructions[slot] = context.instruction
        # flow-matching noise from the episode's own seed: an episode's actions do not depend on which other
        # episodes share its batch, so resumed and re-batched runs replay it (up to float rounding)
        self._noise[slot] = np.random.default_rng([context.episode.seed, self._seed])

    def snapshot(self, slot: int) -> object:
        return copy.deepcopy(self._noise[slot])

    def restore(self, slot: int, state: object) -> None:
        self._noise[slot] = copy.deepcopy(state)

    def act(self, obs: Obs, slots: np.ndarray) -> np.ndarray:
        inputs = self._inputs(transforms.Frame(obs, [self._instructions[s] for s in slots])).inputs()
        shape = (self._backend.action_horizon, MODEL_DIM)
        noise = np.stack([self._noise[s].standard_normal(shape, dtype=np.float32) for s in slots])
        actions = self._backend.sample_actions(inputs, noise=noise)
        return self._outputs(actions)
