"""The lerobot (PyTorch) backend of Pi0 / Pi0.5: only the network forward pass, through lerobot's PI0Policy / PI05Policy.

Written against lerobot==0.6.1 (with transformers==5.5.4). bench's transforms (`pi_transforms`) do everything around
the network (camera map, resize-with-pad to 224, state layout, normalization, Pi0.5's discretized state in the prompt,
SentencePiece tokenization, un-normalization); lerobot's processor pipeline is bypassed on purpose (it would fetch a
tokenizer from the Hub and redo the normalization). This module turns a `PiInputs` batch into the tensors that
`PI0Pytorch.sample_actions` / `PI05Pytorch.sample_actions` take and returns normalized (model-space) actions.

What the model sees (lerobot 0.6.1, `modeling_pi0.py` / `modeling_pi05.py`):
- images: a list of float32 [B, 3, H, W] tensors in [-1, 1] (one per camera, SigLIP's range), and a list of bool [B]
  masks (False = camera absent: its image tokens are padding). Camera order is openpi's (base, left wrist,
  right wrist) unless the checkpoint's config names image features ending in those keys, then the config's order.
- language: int64 token ids [B, L] and a bool attention mask [B, L] (what lerobot's batch calls
  `observation.language.tokens` / `observation.language.attention_mask`).
- state: Pi0 takes float32 [B, 32] (normalized, padded) through `state_proj` as one suffix token. Pi0.5 has no
  continuous state input at all (`PI05Pytorch.sample_actions` has no state argument, no `state_proj`): its state
  arrives discretized in the prompt tokens, which bench's Pi0.5 prompt step builds. `PiInputs.state` is therefore
  ignored for pi05.
- noise: float32 [B, chunk_size, 32], the flow-matching sample at t=1, passed as `sample_actions(..., noise=)`.

A model's architecture can be changed while it is built or loaded (`_architecture`): the tiny test models of
`bench.policies.pi_tiny` do so.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from bench.policies.pi_lerobot_gemma import check_supported
from bench.policies.pi_lerobot_graphs import ChunkGraphs
from bench.policies.pi_lerobot_sampling import sample_chunk, vision_in_bf16
from bench.policies.pi_types import IMAGE_KEYS, MODEL_DIM, PiInputs, check_model_dim, check_noise, check_state

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # checkpoints are local folders: never reach for the Hub

# "bench": bench's path (pi_lerobot_sampling, its Gemma passes in pi_lerobot_gemma with the elementwise steps fused on
# CUDA), replayed from CUDA graphs on a CUDA device (pi_lerobot_graphs);
# "bench-eager": the same path launched op by op; "lerobot": lerobot's own sample_actions
INFERENCE_PATHS = ("bench", "bench-eager", "lerobot")
REQUIRED_FILES = ("config.json", "model.safetensors")


def _modules(model: str):
    """(policy class, config class, modeling module) of lerobot 0.6.1 for `model`."""
    if model == "pi0":
        from lerobot.policies.pi0 import modeling_pi0 as mod
        from lerobot.policies.pi0.configuration_pi0 import PI0Config

        return mod.PI0Policy, PI0Config, mod
    if model == "pi05":
        from lerobot.policies.pi05 import modeling_pi05 as mod
        from lerobot.policies.pi05.configuration_pi05 import PI05Config

        return mod.PI05Policy, PI05Config, mod
    raise ValueError(f"unknown Pi model {model!r}: expected 'pi0' or 'pi05'")


def _check_checkpoint(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"lerobot checkpoint folder {path} does not exist (or is not a folder)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"lerobot checkpoint folder {path} is incomplete: missing {', '.join(missing)} "
            f"(a lerobot HF-format folder needs {', '.join(REQUIRED_FILES)})")


def _weights_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")):
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class LerobotPiBackend:
    """Pi0 / Pi0.5 forward pass through lerobot's PI0Policy / PI05Policy (model only: normalization, tokenization
    and image resizing are done by bench's transforms before, un-normalization after). `random_init=True` builds
    the full-size model with random weights from `seed` (throughput benchmarks)."""

    random_label = "full"  # fingerprint of random weights: "<random_label>-random-<seed>-<model>"

    def __init__(self, model: str, checkpoint: Path | None = None, *, dtype: str = "float32",
                 device: str = "cpu", seed: int = 0, random_init: bool = False, inference: str = "bench"):
        import torch

        if inference not in INFERENCE_PATHS:
            raise ValueError(f"unknown inference path {inference!r}: one of {', '.join(INFERENCE_PATHS)}")

        policy_cls, config_cls, mod = _modules(model)
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype {dtype!r} not supported by lerobot's Pi models: use float32 or bfloat16")
        if random_init == (checkpoint is not None):
            raise ValueError(f"{type(self).__name__} needs exactly one of checkpoint=<folder> or random_init=True")
        self.model_name = model
        self.device = torch.device(device)
        self.seed = seed
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        self._checkpoint = None
        self._fingerprint: str | None = None

        if random_init:
            config = config_cls(device=device, dtype=dtype)
            with torch.random.fork_rng(devices=[]), self._architecture(mod), torch.device(device):  # where it runs
                torch.manual_seed(seed)
                policy = policy_cls(config)
            self._fingerprint = f"{self.random_label}-random-{seed}-{model}"
        else:
            policy = self._load(Path(checkpoint), model, policy_cls, mod, dtype, device)

        self.policy = policy.to(self.device).eval()
        self.config = policy.config
        self.action_horizon = int(self.config.chunk_size)
        self.num_steps = int(self.config.num_inference_steps)
        self.max_token_len = int(self.config.tokenizer_max_length)
        check_model_dim(f"{model}: max_action_dim", int(self.config.max_action_dim))
        check_model_dim(f"{model}: max_state_dim", int(self.config.max_state_dim))
        self.image_keys = self._camera_order()
        self.inference = inference
        if inference != "lerobot":
            pwe = self.policy.model.paligemma_with_expert
            check_supported(pwe.paligemma.model.language_model)
            check_supported(pwe.gemma_expert.model)
        if inference != "lerobot" and dtype == "bfloat16":
            vision_in_bf16(self.policy.model)
        self._graphs = None
        if inference == "bench" and self.device.type == "cuda":
            self._graphs = ChunkGraphs(self.policy.model, self.num_steps, self.action_horizon)

    def _load(self, path: Path, model: str, policy_cls, mod, dtype: str, device: str):
        from lerobot.configs import PreTrainedConfig
        from safetensors import safe_open

        _check_checkpoint(path)
        try:
            raw = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path / 'config.json'} is not valid JSON ({e})") from None
        if raw.get("type") != model:
            raise ValueError(f"{path} holds a {raw.get('type')!r} policy (config.json 'type'), not {model!r}")
        if raw.get("use_relative_actions"):  # its actions are deltas from the state: bench's adapter would be wrong
            raise ValueError(f"{path} was trained with use_relative_actions=true, which bench does not support yet")
        config = PreTrainedConfig.from_pretrained(path, local_files_only=True)
        config.device = device
        config.dtype = dtype
        config.compile_model = False
        config.gradient_checkpointing = False

        # lerobot's PI0Policy/PI05Policy.from_pretrained print their progress and, on any loading error, print a
        # warning and return the random-initialized model: capture the output and refuse such a model.
        log = io.StringIO()
        with self._architecture(mod), contextlib.redirect_stdout(log):
            policy = policy_cls.from_pretrained(path, config=config, local_files_only=True, strict=True)
        text = log.getvalue()
        for marker in ("Could not load state dict", "Missing keys", "Unexpected keys"):
            if marker in text:
                raise ValueError(f"{path}: lerobot could not load the weights into a {model} model:\n{text.strip()}")
        # belt and braces: one tensor of the file must be in the model
        state = policy.state_dict()
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            for key in ("model.action_out_proj.weight", "action_out_proj.weight"):
                if key in f.keys():
                    saved = f.get_tensor(key)
                    loaded = state["model.action_out_proj.weight"]
                    if not (saved.shape == loaded.shape and (saved.float() == loaded.float().cpu()).all()):
                        raise ValueError(f"{path}: weights did not load into the {model} model")
                    break
        self._checkpoint = path
        return policy

    def _architecture(self, mod) -> contextlib.AbstractContextManager:
        """A context in which lerobot's modeling module `mod` builds the model: as it is, here."""
        return contextlib.nullcontext()

    def _camera_order(self) -> tuple[str, ...]:
        names = [key.rsplit(".", 1)[-1] for key in getattr(self.config, "image_features", {}) or {}]
        if len(names) == len(IMAGE_KEYS) and set(names) == set(IMAGE_KEYS):
            return tuple(names)
        return IMAGE_KEYS

    # -- inference -------------------------------------------------------------------------------------------------

    def sample_actions(self, inputs: PiInputs, noise: np.ndarray | None = None) -> np.ndarray:
        """One batched forward -> float32 [B, action_horizon, 32] normalized (model-space) actions."""
        import torch

        tokens = np.asarray(inputs.tokens)
        batch = tokens.shape[0]
        res = tuple(self.config.image_resolution)
        images, masks = [], []
        for key in self.image_keys:
            if key in inputs.images:
                img = np.asarray(inputs.images[key])
                if img.shape != (batch, *res, 3) or img.dtype != np.uint8:
                    raise ValueError(f"image {key}: expected uint8 {(batch, *res, 3)}, got {img.dtype} {img.shape}")
                t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device)
                t = t.permute(0, 3, 1, 2).to(torch.float32) / 255.0 * 2.0 - 1.0  # [B,3,H,W] in [-1, 1]
                mask = torch.from_numpy(np.asarray(inputs.image_masks[key], bool).reshape(batch)).to(self.device)
            else:  # absent camera: as lerobot pads it (-1 image, masked out)
                t = torch.full((batch, 3, *res), -1.0, device=self.device)
                mask = torch.zeros(batch, dtype=torch.bool, device=self.device)
            images.append(t)
            masks.append(mask)
        lang_tokens = torch.from_numpy(tokens.astype(np.int64)).to(self.device)
        lang_masks = torch.from_numpy(np.asarray(inputs.token_masks, bool)).to(self.device)
        if lang_masks.shape != lang_tokens.shape:
            raise ValueError(f"token_masks {tuple(lang_masks.shape)} != tokens {tuple(lang_tokens.shape)}")

        noise = check_noise(noise, batch, self.action_horizon)
        if noise is None:
            shape = (batch, self.action_horizon, MODEL_DIM)
            noise_t = torch.randn(shape, generator=self._generator, dtype=torch.float32)
        else:
            noise_t = torch.from_numpy(noise.copy())
        noise_t = noise_t.to(self.device)

        state_t = None
        if self.model_name == "pi0":  # pi05 has no continuous state input (the state is in the prompt tokens)
            state_t = torch.from_numpy(check_state(inputs.state, batch).copy()).to(self.device)
        with torch.inference_mode():
            if self.inference == "lerobot":
                state_arg = () if state_t is None else (state_t,)
                actions = self.policy.model.sample_actions(images, masks, lang_tokens, lang_masks, *state_arg,
                                                           noise=noise_t)
            elif self.inference == "bench" and self._graphs is not None:
                actions = self._graphs(images, masks, lang_tokens, lang_masks, state_t, noise_t)
            else:
                actions = sample_chunk(self.policy.model, images, masks, lang_tokens, lang_masks, state_t, noise_t,
                                       self.num_steps, self.action_horizon)
        return actions.to(torch.float32).cpu().numpy()

    # -- identity / persistence ------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _weights_sha256(self._checkpoint)
        return self._fingerprint

    def save(self, path: Path) -> None:
        self.policy.save_pretrained(Path(path))
