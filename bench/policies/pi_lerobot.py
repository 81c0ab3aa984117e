"""The lerobot (PyTorch) backend of Pi0 / Pi0.5: only the network forward pass, through lerobot's PI0Policy / PI05Policy.

Written against lerobot==0.6.1 (with transformers==5.5.4). bench's adapters do everything around the network
(camera map, resize-with-pad to 224, state layout, normalization, Pi0.5's discretized state in the prompt,
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
  arrives discretized in the prompt tokens, which bench's Pi0.5 prompt adapter builds. `PiInputs.state` is therefore
  ignored for pi05.
- noise: float32 [B, chunk_size, 32], the flow-matching sample at t=1, passed as `sample_actions(..., noise=)`.

Tiny models (tests): lerobot's configs only accept the `gemma_300m` / `gemma_2b` variants and hard-code a full-size
SigLIP, so the tiny architecture is obtained by temporarily replacing two module-level names of the pinned lerobot
version (private API, fine for lerobot==0.6.1 only; re-check on upgrade) while the policy is constructed:
- `modeling_pi0(5).get_gemma_config`: returns tiny Gemma widths/depths for the two variant names;
- `modeling_pi0(5).PaliGemmaForConditionalGenerationWithPiGemma`: wrapped so that the PaliGemma config's
  `vision_config` is shrunk (hidden size, depth, heads, patch size, and `projection_dim` = tiny text width) right
  after `PaliGemmaWithExpertModel.__init__` filled in its full-size values, before the HF model is built.
Constraints of lerobot 0.6.1 the tiny spec respects: 8 attention heads (`compute_layer_complete` reshapes with a
literal `1 * 8 * head_dim`), the same head_dim / kv heads / depth for the VLM and the expert (joint attention), and the
full 257152-token vocabulary (hard-coded; it dominates the tiny parameter count). A saved tiny model carries its
architecture in `bench_tiny_arch.json`, so that loading it applies the same overrides.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bench.policies.pi import PiInputs

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # checkpoints are local folders: never reach for the Hub

MODEL_DIM = 32
INFERENCE_PATHS = ("bench", "lerobot")
CAMERA_KEYS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")  # openpi's order
TINY_ARCH_FILE = "bench_tiny_arch.json"
REQUIRED_FILES = ("config.json", "model.safetensors")

# Tiny random model for tests: ~40M parameters, nearly all of them the two 257152-row vocabulary matrices.
TINY_ARCH = {
    "gemma": {
        # keyed by the (valid) variant names the config carries; both must share num_heads=8, kv heads, head_dim, depth
        "gemma_2b": {"width": 64, "depth": 2, "mlp_dim": 128, "num_heads": 8, "num_kv_heads": 1, "head_dim": 16},
        "gemma_300m": {"width": 32, "depth": 2, "mlp_dim": 64, "num_heads": 8, "num_kv_heads": 1, "head_dim": 16},
    },
    # SigLIP: 224 / 28 = 8x8 = 64 tokens per camera
    "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
               "patch_size": 28},
}


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


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _tiny_architecture(mod, arch: dict):
    """Temporarily shrink lerobot 0.6.1's Gemma variants and SigLIP (private module-level names, see module doc)."""
    gemma_specs = arch["gemma"]
    vision = arch["vision"]
    orig_get_config = mod.get_gemma_config
    orig_paligemma_cls = mod.PaliGemmaForConditionalGenerationWithPiGemma

    def tiny_get_gemma_config(variant: str):
        if variant not in gemma_specs:
            raise ValueError(f"no tiny spec for Gemma variant {variant!r}")
        return mod.GemmaConfig(**gemma_specs[variant])

    def tiny_paligemma(config):
        for key, value in vision.items():
            setattr(config.vision_config, key, value)
        config.vision_config.projection_dim = config.text_config.hidden_size
        config.text_config.num_image_tokens = (config.vision_config.image_size // vision["patch_size"]) ** 2
        return orig_paligemma_cls(config=config)

    with _PATCH_LOCK:
        mod.get_gemma_config = tiny_get_gemma_config
        mod.PaliGemmaForConditionalGenerationWithPiGemma = tiny_paligemma
        try:
            yield
        finally:
            mod.get_gemma_config = orig_get_config
            mod.PaliGemmaForConditionalGenerationWithPiGemma = orig_paligemma_cls


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
    and image resizing are done by bench's adapters before, un-normalization after)."""

    def __init__(self, model: str, checkpoint: Path | None = None, *, tiny: bool = False, dtype: str = "float32",
                 device: str = "cpu", seed: int = 0, random_init: bool = False, inference: str = "bench"):
        import torch

        if inference not in INFERENCE_PATHS:
            raise ValueError(f"unknown inference path {inference!r}: one of {', '.join(INFERENCE_PATHS)}")

        policy_cls, config_cls, mod = _modules(model)
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype {dtype!r} not supported by lerobot's Pi models: use float32 or bfloat16")
        if (tiny or random_init) == (checkpoint is not None):
            raise ValueError("LerobotPiBackend needs exactly one of checkpoint=<folder>, tiny=True or random_init=True")
        self.model_name = model
        self.device = torch.device(device)
        self.seed = seed
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        self._checkpoint = None
        self._fingerprint: str | None = None
        self._arch: dict | None = None

        if tiny or random_init:  # random weights: tiny for tests, full size for throughput benchmarks
            self._arch = TINY_ARCH if tiny else None
            config = config_cls(device=device, dtype=dtype)
            patch = _tiny_architecture(mod, self._arch) if tiny else contextlib.nullcontext()
            with torch.random.fork_rng(devices=[]), patch, torch.device(device):  # initialized where it runs
                torch.manual_seed(seed)
                policy = policy_cls(config)
            self._fingerprint = f"{'tiny' if tiny else 'full'}-random-{seed}-{model}"
        else:
            policy = self._load(Path(checkpoint), model, policy_cls, mod, dtype, device)

        self.policy = policy.to(self.device).eval()
        self.config = policy.config
        self.action_horizon = int(self.config.chunk_size)
        self.num_steps = int(self.config.num_inference_steps)
        self.max_token_len = int(self.config.tokenizer_max_length)
        self.action_dim = int(self.config.max_action_dim)
        self.state_dim = int(self.config.max_state_dim)
        if self.action_dim != MODEL_DIM:
            raise ValueError(f"{model}: max_action_dim is {self.action_dim}, bench expects {MODEL_DIM}")
        self.image_keys = self._camera_order()
        self.inference = inference
        if inference == "bench" and dtype == "bfloat16":
            self._vision_in_bf16()

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

        arch_file = path / TINY_ARCH_FILE
        self._arch = json.loads(arch_file.read_text()) if arch_file.is_file() else None
        patch = _tiny_architecture(mod, self._arch) if self._arch else contextlib.nullcontext()
        # lerobot's PI0Policy/PI05Policy.from_pretrained print their progress and, on any loading error, print a
        # warning and return the random-initialized model: capture the output and refuse such a model.
        log = io.StringIO()
        with patch, contextlib.redirect_stdout(log):
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

    def _camera_order(self) -> tuple[str, ...]:
        names = [key.rsplit(".", 1)[-1] for key in getattr(self.config, "image_features", {}) or {}]
        if len(names) == len(CAMERA_KEYS) and set(names) == set(CAMERA_KEYS):
            return tuple(names)
        return CAMERA_KEYS

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

        shape = (batch, self.action_horizon, self.action_dim)
        if noise is None:
            noise_t = torch.randn(shape, generator=self._generator, dtype=torch.float32)
        else:
            noise = np.asarray(noise, np.float32)
            if noise.shape != shape:
                raise ValueError(f"noise: expected {shape}, got {noise.shape}")
            noise_t = torch.from_numpy(noise.copy())
        noise_t = noise_t.to(self.device)

        state_t = None
        if self.model_name == "pi0":  # pi05 has no continuous state input (the state is in the prompt tokens)
            state = np.asarray(inputs.state, np.float32)
            if state.shape != (batch, self.state_dim):
                raise ValueError(f"state: expected float32 {(batch, self.state_dim)}, got {state.shape}")
            state_t = torch.from_numpy(state.copy()).to(self.device)
        with torch.inference_mode():
            if self.inference == "lerobot":
                state_arg = () if state_t is None else (state_t,)
                actions = self.policy.model.sample_actions(images, masks, lang_tokens, lang_masks, *state_arg,
                                                           noise=noise_t)
            else:
                from torch.nn.attention import SDPBackend, sdpa_kernel

                present = [i for i, m in enumerate(masks) if bool(m.any())]  # one host sync, before the GPU work
                # not cuDNN's attention: it failed ("mha_graph.execute") on the GPU machine in a process that also
                # renders with SAPIEN, as a reference loop or GPU physics does
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                    actions = self._bench_sample([images[i] for i in present], [masks[i] for i in present], lang_tokens,
                                           lang_masks, state_t, noise_t)
        return actions.to(torch.float32).cpu().numpy()

    def _vision_in_bf16(self) -> None:
        """Runs SigLIP and its projector in bf16, as openpi does; lerobot keeps them in float32 (for training),
        which at batch 64 made them a third of the call (float32 matmuls run at a fraction of the bf16 rate)."""
        import torch

        pwe = self.policy.model.paligemma_with_expert
        pwe.paligemma.model.vision_tower.to(torch.bfloat16)
        pwe.paligemma.model.multi_modal_projector.to(torch.bfloat16)

        def embed_image(image):
            return pwe.paligemma.model.get_image_features(image.to(torch.bfloat16)).pooler_output

        pwe.embed_image = embed_image  # instance attribute: replaces lerobot's float32 cast for this model only

    def _bench_sample(self, images, masks, lang_tokens, lang_masks, state, noise):
        """lerobot's `sample_actions` (same prefix, same cached keys and values reused by every denoising step,
        same Euler steps from t=1 to 0), with changes that leave the result unchanged:
        - cameras absent from every row of the batch are left out of the prefix: their tokens are masked out of
          attention and do not advance the position ids, so they only cost SigLIP and Gemma work;
        - the prefix's keys and values sit in one buffer with room for the action tokens (`_ChunkCache`), which
          each denoising step overwrites in place; lerobot copies the whole cache every step and appends to it;
        - attention is PyTorch's fused scaled-dot-product kernel instead of the eager softmax.
        """
        import torch
        from lerobot.policies.common.vla_utils import make_att_2d_masks

        model = self.policy.model
        pwe = model.paligemma_with_expert
        prefix_embs, prefix_pad, prefix_att = model.embed_prefix(images, masks, lang_tokens, lang_masks)
        attention = make_att_2d_masks(prefix_pad, prefix_att)[:, None]  # bool [B, 1, L, L]: True = may attend
        positions = torch.cumsum(prefix_pad, dim=1) - 1
        pwe.paligemma.model.language_model.config._attn_implementation = "sdpa"
        pwe.gemma_expert.model.config._attn_implementation = "sdpa"
        cache = _ChunkCache()
        pwe.forward(attention_mask=attention, position_ids=positions, past_key_values=cache,
                    inputs_embeds=[prefix_embs, None], use_cache=True)
        prefix_len = positions[:, -1:] + 1  # prefix tokens that count, per row
        dt = -1.0 / self.num_steps
        x = noise
        for step in range(self.num_steps):
            time = torch.full((x.shape[0],), 1.0 + step * dt, dtype=torch.float32, device=x.device)
            x = x + dt * self._velocity(cache, prefix_pad, prefix_len, state, x, time)
        return x

    def _velocity(self, cache, prefix_pad, prefix_len, state, x, time):
        """One denoising step: the action expert attends to the cached prefix and to the action tokens."""
        import torch
        from lerobot.policies.common.vla_utils import make_att_2d_masks

        model = self.policy.model
        state_arg = () if state is None else (state,)  # pi0 embeds the state as the first action-expert token
        suffix_embs, suffix_pad, suffix_att, adarms_cond = model.embed_suffix(*state_arg, x, time)
        batch, suffix_len = suffix_pad.shape
        attention = torch.cat([prefix_pad[:, None, :].expand(batch, suffix_len, prefix_pad.shape[1]),
                               make_att_2d_masks(suffix_pad, suffix_att)], dim=2)[:, None]
        positions = prefix_len + torch.cumsum(suffix_pad, dim=1) - 1
        (_, suffix_out), _ = model.paligemma_with_expert.forward(
            attention_mask=attention, position_ids=positions, past_key_values=cache,
            inputs_embeds=[None, suffix_embs], use_cache=False, adarms_cond=[None, adarms_cond])
        return model.action_out_proj(suffix_out[:, -self.action_horizon:].to(torch.float32))

    # -- identity / persistence ------------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _weights_sha256(self._checkpoint)
        return self._fingerprint

    def save(self, path: Path) -> None:
        path = Path(path)
        self.policy.save_pretrained(path)
        if self._arch is not None:
            (path / TINY_ARCH_FILE).write_text(json.dumps(self._arch, indent=2))


class _ChunkCache:
    """Keys and values per layer for one chunk: the prefix's, written once, then the action tokens' of the
    current denoising step, overwritten in place by the next. It implements the two methods of transformers'
    Cache that Gemma calls (`update`, `get_seq_length`); the first `update` of a layer is the prefix pass."""

    def __init__(self):
        self.keys: list = []
        self.values: list = []
        self.prefix_len = 0

    def update(self, key, value, layer_idx: int, cache_kwargs=None):
        import torch

        if layer_idx == len(self.keys):  # the prefix pass
            self.prefix_len = key.shape[2]
            self.keys.append(key)
            self.values.append(value)
        elif self.keys[layer_idx].shape[2] != self.prefix_len + key.shape[2]:  # first step: make room, once
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value], dim=2)
        else:
            self.keys[layer_idx][:, :, self.prefix_len:] = key
            self.values[layer_idx][:, :, self.prefix_len:] = value
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.prefix_len
