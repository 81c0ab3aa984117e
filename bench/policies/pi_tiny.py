"""Tiny stand-ins for tests and benchmarks: a tiny lerobot Pi0 / Pi0.5 architecture with random weights, a tiny
SentencePiece tokenizer laid out like PaliGemma's, and neutral norm stats. Nothing here is a real model.

lerobot's configs only accept the `gemma_300m` / `gemma_2b` variants and hard-code a full-size SigLIP, so the tiny
architecture is obtained by temporarily replacing two module-level names of the pinned lerobot version (private API,
fine for lerobot==0.6.1 only; re-check on upgrade) while the model is built or loaded:
- `modeling_pi0(5).get_gemma_config`: returns tiny Gemma widths/depths for the two variant names;
- `modeling_pi0(5).PaliGemmaForConditionalGenerationWithPiGemma`: wrapped so that the PaliGemma config's
  `vision_config` is shrunk (hidden size, depth, heads, patch size, and `projection_dim` = tiny text width) right
  after `PaliGemmaWithExpertModel.__init__` filled in its full-size values, before the HF model is built.
- `modeling_pi0(5).PiGemmaForCausalLM` (the action expert), only when the spec has a `vocab_size`: wrapped so that
  its (unused) output head has that many rows instead of 257152.
Constraints of lerobot 0.6.1 the tiny spec respects: 8 attention heads (`compute_layer_complete` reshapes with a
literal `1 * 8 * head_dim`), the same head_dim / kv heads / depth for the VLM and the expert (joint attention).
Without `vocab_size` the vocabulary is PaliGemma's 257152 tokens (hard-coded by lerobot; it dominates the tiny
parameter count); with it, both vocabulary matrices shrink to a tokenizer of that size (a SentencePiece model of
one's own, `train_tokenizer`). A saved tiny model carries its architecture in `pi_checkpoint.TINY_MARKER`, so that
loading it applies the same overrides (`bench run` sees the marker and loads it with this module's backend).
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

from bench.policies.pi_checkpoint import TINY_MARKER
from bench.policies.pi_lerobot import LerobotPiBackend

# ~40M parameters, nearly all of them the two 257152-row vocabulary matrices; a chunk in well under a second on CPU
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
TOKENIZER_CORPUS = ("Grasp a red cube and move it to a target goal position.",
                    "Push and move a cube to a goal region.",
                    "Task: pick up the peg, State: 0 12 128 255;\nAction: ")

_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def tiny_architecture(mod, arch: dict):
    """Temporarily shrink lerobot 0.6.1's Gemma variants and SigLIP in modeling module `mod` (see the module doc)."""
    gemma_specs = arch["gemma"]
    vision = arch["vision"]
    vocab_size = arch.get("vocab_size")
    orig_get_config = mod.get_gemma_config
    orig_paligemma_cls = mod.PaliGemmaForConditionalGenerationWithPiGemma
    orig_expert_cls = mod.PiGemmaForCausalLM

    def tiny_get_gemma_config(variant: str):
        if variant not in gemma_specs:
            raise ValueError(f"no tiny spec for Gemma variant {variant!r}")
        return mod.GemmaConfig(**gemma_specs[variant])

    def tiny_paligemma(config):
        for key, value in vision.items():
            setattr(config.vision_config, key, value)
        config.vision_config.projection_dim = config.text_config.hidden_size
        config.text_config.num_image_tokens = (config.vision_config.image_size // vision["patch_size"]) ** 2
        if vocab_size:
            config.text_config.vocab_size = vocab_size
        return orig_paligemma_cls(config=config)

    def small_vocab_expert(config):
        config.vocab_size = vocab_size
        return orig_expert_cls(config=config)

    with _PATCH_LOCK:
        mod.get_gemma_config = tiny_get_gemma_config
        mod.PaliGemmaForConditionalGenerationWithPiGemma = tiny_paligemma
        if vocab_size:
            mod.PiGemmaForCausalLM = small_vocab_expert
        try:
            yield
        finally:
            mod.get_gemma_config = orig_get_config
            mod.PaliGemmaForConditionalGenerationWithPiGemma = orig_paligemma_cls
            mod.PiGemmaForCausalLM = orig_expert_cls


class TinyLerobotPiBackend(LerobotPiBackend):
    """lerobot's Pi0 / Pi0.5 on the tiny architecture: random weights from `seed`, or a checkpoint saved from such a
    model (its architecture read from the checkpoint)."""

    random_label = "tiny"

    def __init__(self, model: str, checkpoint: Path | None = None, **options):
        marker = Path(checkpoint) / TINY_MARKER if checkpoint is not None else None
        if marker is not None and not marker.is_file():
            raise FileNotFoundError(f"{checkpoint} holds no tiny model: {TINY_MARKER} is missing")
        self.arch = json.loads(marker.read_text()) if marker is not None else TINY_ARCH
        super().__init__(model, checkpoint, random_init=checkpoint is None, **options)
        if checkpoint is None:
            self._randomize_adaptive_norms()

    def _randomize_adaptive_norms(self) -> None:
        """lerobot starts the adaptive norms' `dense` weights at zero (a new Pi0.5 is not yet conditioned on the
        denoising time), so a random model's action expert would see every step alike. The tiny model's get random
        weights from its seed, so that tests see the time reach the expert, as in a trained model."""
        import torch
        from lerobot.policies.pi_gemma import PiGemmaRMSNorm

        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        with torch.no_grad():
            for module in self.policy.modules():
                if isinstance(module, PiGemmaRMSNorm) and module.dense is not None:
                    weight = module.dense.weight
                    weight.copy_(0.1 * torch.randn(weight.shape, generator=generator))

    def _architecture(self, mod) -> contextlib.AbstractContextManager:
        return tiny_architecture(mod, self.arch)

    def save(self, path: Path) -> None:
        super().save(path)
        (Path(path) / TINY_MARKER).write_text(json.dumps(self.arch, indent=2))


def train_tokenizer(folder: Path, name: str = "tiny", corpus: tuple[str, ...] = TOKENIZER_CORPUS,
                    vocab_size: int = 300, dummy_prefix: bool = True, split_digits: bool = False) -> Path:
    """A SentencePiece model trained in milliseconds, laid out like PaliGemma's (pad 0, eos 1, bos 2, unk 3, byte
    fallback, whitespace and "\\n" kept): `folder`/`name`.model. `dummy_prefix=False` is Gemma's whitespace
    convention (no space added before the text), the one Hugging Face's GemmaTokenizer applies to any model file.
    `split_digits=True` writes every digit as its own piece, as Gemma's tokenizer does: Pi0.5's state bins then share
    their digits' tokens instead of each bin being a token of its own."""
    import sentencepiece

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text("\n".join(list(corpus) * 20))
    sentencepiece.SentencePieceTrainer.train(
        input=str(folder / "corpus.txt"), model_prefix=str(folder / name), vocab_size=vocab_size,
        byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, model_type="bpe", minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False, hard_vocab_limit=False,
        add_dummy_prefix=dummy_prefix, split_digits=split_digits)
    return folder / f"{name}.model"


def neutral_norm_stats(state_dim: int = 8, action_dim: int = 7) -> dict:
    """openpi's norm_stats.json content that leaves values as they are (mean 0, std 1, quantiles -1 and 1)."""
    def stats(n: int) -> dict:
        return {"mean": [0.0] * n, "std": [1.0] * n, "q01": [-1.0] * n, "q99": [1.0] * n}

    return {"norm_stats": {"state": stats(state_dim), "actions": stats(action_dim)}}
