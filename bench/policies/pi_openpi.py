"""Pi0 / Pi0.5 on openpi's JAX model (the `--backend openpi` of `bench.policies.pi`).

Runs only in the openpi environment (`scripts/setup-openpi-env.sh` -> .venv-openpi): openpi pins numpy<2 and an old
jax, so it cannot share lerobot's venv. This module only runs the network: bench's transforms (`pi_transforms`) build
`PiInputs` (normalized state, tokens, uint8 images) and un-normalize what comes back.

Checkpoints are openpi step folders (`<ckpt>/params`, an orbax PyTree checkpoint holding {"params": pure dict}), as
written by openpi training (`training/checkpoints.py`) and as released by Physical Intelligence; restored the way
`openpi.policies.policy_config.create_trained_policy` does it (`restore_params` -> `Pi0Config.load`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx
from openpi.models import model as _model  # ImportError outside the openpi environment, on import as pi.py expects
from openpi.models import pi0_config

from bench.policies.pi_checkpoint import TINY_MARKER
from bench.policies.pi_types import IMAGE_KEYS, MODEL_DIM, MODELS, PiInputs, check_model_dim, check_noise, check_state

DTYPES = ("bfloat16", "float32")
PARAMS_DIR = "params"
PARAMS_METADATA = "_METADATA"  # orbax writes it last: a params folder without it is incomplete


def _check_checkpoint(checkpoint: Path) -> Path:
    """`<checkpoint>/params/_METADATA` must exist; raise FileNotFoundError naming what is missing."""
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"openpi checkpoint folder not found: {checkpoint}")
    params = checkpoint / PARAMS_DIR
    if not params.is_dir():
        raise FileNotFoundError(f"openpi checkpoint {checkpoint} has no '{PARAMS_DIR}/' folder (expected {params}); "
                                "pass the step folder of an openpi checkpoint, e.g. .../pi05_libero/<step>")
    if not (params / PARAMS_METADATA).is_file():
        raise FileNotFoundError(f"openpi checkpoint {checkpoint} is incomplete: {params / PARAMS_METADATA} is missing "
                                "(interrupted download or save?)")
    return params


def params_fingerprint(params_dir: Path) -> str:
    """sha256 (first 16 hex digits) over every file under `params_dir`: relative path, size and content."""
    digest = hashlib.sha256()
    for file in sorted(p for p in params_dir.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(params_dir).as_posix()}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


class OpenpiPiBackend:
    """Pi0 / Pi0.5 through openpi's JAX model: build the model config, restore <ckpt>/params, batched sample_actions
    under jit. `action_horizon`, `max_token_len` and `num_steps` must match the checkpoint's training config
    (openpi's defaults: 50, 48 / 200 and 10; e.g. pi05_libero was trained with horizon 10): the preset's
    `train_config` supplies the first two (`pi_train_config`).
    """

    variants: dict = {}  # Pi0Config's Gemma variants: its defaults, the real model
    random_label: str | None = None  # None: weights come from a checkpoint; else random ones, fingerprinted so

    def __init__(self, model: str, checkpoint: Path | None = None, *, dtype: str = "bfloat16",
                 seed: int = 0, action_horizon: int = 50, num_steps: int = 10, max_token_len: int | None = None,
                 random_init: bool = False):
        if model not in MODELS:
            raise ValueError(f"unknown model '{model}': one of {MODELS}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype '{dtype}': one of {DTYPES}")
        if random_init and checkpoint is not None:
            raise ValueError(f"{type(self).__name__} takes a checkpoint or random_init=True, not both")
        random_label = self.random_label or ("full" if random_init else None)  # full-size random weights: benchmarks
        if checkpoint is None and random_label is None:
            raise FileNotFoundError(f"{model} needs an openpi checkpoint folder (with {PARAMS_DIR}/): none given")
        params_dir = _check_checkpoint(Path(checkpoint)) if checkpoint is not None else None

        self.model, self.dtype, self.seed, self.num_steps = model, dtype, seed, num_steps
        self.config = pi0_config.Pi0Config(pi05=model == "pi05", dtype=dtype, action_horizon=action_horizon,
                                           max_token_len=max_token_len, **self.variants)  # None: its default
        self.action_horizon = self.config.action_horizon
        self.max_token_len = self.config.max_token_len
        check_model_dim(f"{model}: action_dim", self.config.action_dim)
        param_dtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32

        if params_dir is not None:
            # as openpi's create_trained_policy: restore (cast to the inference dtype), then load into the config
            params = _model.restore_params(params_dir, dtype=param_dtype)
            self._model = self.config.load(params)
            self._fingerprint = params_fingerprint(params_dir)
        else:
            rand = self.config.create(jax.random.key(seed))
            params = nnx.state(rand, nnx.Param).to_pure_dict()
            del rand
            params = jax.tree.map(lambda x: x.astype(param_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                                  params)
            self._model = self.config.load(params)
            self._fingerprint = f"{random_label}-random-{seed}-{model}"
        del params
        self._model.eval()

        graphdef, self._state = nnx.split(self._model)
        steps = num_steps

        def _sample(state, rng, observation, noise):
            net = nnx.merge(graphdef, state)
            return net.sample_actions(rng, observation, num_steps=steps, noise=noise).astype(jnp.float32)

        # the weights are an argument, not closed-over constants: one compile per batch size, no 1 GB+ HLO constants
        self._sample = jax.jit(_sample)
        self._key = jax.random.key(seed)
        self._calls = 0

    # -- inference -------------------------------------------------------------------------------------------------

    def _observation(self, inputs: PiInputs):
        tokens = np.asarray(inputs.tokens)
        token_masks = np.asarray(inputs.token_masks, bool)
        batch = len(tokens)
        state = check_state(inputs.state, batch)
        if tokens.shape != token_masks.shape or tokens.ndim != 2:
            raise ValueError(f"tokens {tokens.shape} and token_masks {token_masks.shape} must both be [{batch}, L]")
        if tokens.shape[1] > self.max_token_len:
            raise ValueError(f"{tokens.shape[1]} prompt tokens, the model takes at most {self.max_token_len}")
        pad = self.max_token_len - tokens.shape[1]  # a fixed length: one compiled program per batch size
        tokens = np.pad(tokens, ((0, 0), (0, pad))).astype(np.int32)
        token_masks = np.pad(token_masks, ((0, 0), (0, pad)))
        images, masks = {}, {}
        for key in IMAGE_KEYS:
            image = np.asarray(inputs.images[key])
            if image.dtype != np.uint8 or image.shape[0] != batch or image.shape[-1] != 3 or image.ndim != 4:
                raise ValueError(f"image {key} must be uint8 [{batch}, H, W, 3], got {image.dtype} {image.shape}")
            images[key] = jnp.asarray(image, jnp.float32) / 127.5 - 1.0  # openpi's [-1, 1] (== x/255*2-1)
            masks[key] = jnp.asarray(np.asarray(inputs.image_masks[key], bool).reshape(batch))
        return _model.Observation(images=images, image_masks=masks, state=jnp.asarray(state),
                                              tokenized_prompt=jnp.asarray(tokens),
                                              tokenized_prompt_mask=jnp.asarray(token_masks))

    def sample_actions(self, inputs: PiInputs, noise: np.ndarray | None = None) -> np.ndarray:
        """One batched, jitted flow-matching rollout -> float32 [B, action_horizon, 32] normalized actions.

        `noise` ([B, action_horizon, 32]) is the initial flow-matching noise; without it, noise comes from
        PRNGKey(seed) folded with a call counter (reproducible run to run, different call to call).
        """
        observation = self._observation(inputs)
        batch = observation.state.shape[0]
        noise = check_noise(noise, batch, self.action_horizon)
        rng = jax.random.fold_in(self._key, self._calls)
        self._calls += 1
        if noise is None:
            noise = jax.random.normal(rng, (batch, self.action_horizon, MODEL_DIM), jnp.float32)
        else:
            noise = jnp.asarray(noise)
        actions = self._sample(self._state, rng, observation, noise)
        return np.asarray(jax.device_get(actions), np.float32)

    # -- identity and persistence ----------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        return self._fingerprint

    def save(self, path: Path) -> None:
        """Write `path/params` (orbax, openpi's layout: {"params": pure dict}) that the same class restores."""
        params = nnx.state(self._model, nnx.Param).to_pure_dict()
        path = Path(path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        with ocp.PyTreeCheckpointer() as ckptr:
            ckptr.save(path / PARAMS_DIR, {"params": params}, force=True)


class TinyOpenpiPiBackend(OpenpiPiBackend):
    """openpi's own "dummy" Gemma variants (SigLIP stays full size: ~430M parameters), for tests: random weights from
    `seed`, or a checkpoint saved from such a model (which says so in `pi_checkpoint.TINY_MARKER`)."""

    variants = {"paligemma_variant": "dummy", "action_expert_variant": "dummy"}
    random_label = "tiny"

    def save(self, path: Path) -> None:
        super().save(path)
        (Path(path) / TINY_MARKER).write_text(json.dumps({"openpi": self.variants}, indent=2))
