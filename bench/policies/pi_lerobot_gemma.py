"""bench's own pass through one of lerobot 0.6.1's `PiGemmaModel`s (transformers' Gemma decoder with lerobot's
adaptive RMSNorm and gated residuals: PaliGemma's language model for the prefix, the action expert for the
denoising steps), for inference into a `ChunkCache`.

It runs the modules' own weights through the operations `PiGemmaModel.forward` runs, in the same order and
precision (tests/test_pi_lerobot.py holds bench's path against lerobot's `sample_actions`). What changes is that the
elementwise steps between the matrix products (each RMSNorm with the residual add before it, the adaRMS
modulation, the rotary embedding, the MLP's GELU times its up projection) are functions of their own: on a CUDA
device each is compiled once by torch.compile into one fused kernel, where lerobot's modules launch one kernel per
operation and write every intermediate to memory. A profile of a batch-64 Pi0.5 chunk had them at ~32% of the GPU
time (benchmarks/README.md, section 0b); CUDA graphs (`pi_lerobot_graphs`) replay the fused kernels like any other.
On the CPU they run as written (no compiler needed), which is what CI's equality tests exercise.
"""

from __future__ import annotations

import functools
import os


def _rms(x, eps: float):
    """lerobot's `PiGemmaRMSNorm._norm`: the mean square in float32, the product promoted to float32."""
    import torch

    return x * torch.rsqrt(torch.mean(torch.square(x.float()), dim=-1, keepdim=True) + eps)


def rms_norm(x, weight, eps: float):
    """Gemma's RMSNorm, as lerobot's `PiGemmaRMSNorm` without a condition."""
    return (_rms(x, eps) * (1.0 + weight.float())).type_as(x)


def add_rms_norm(residual, update, weight, eps: float):
    """The residual add (lerobot's `_gated_residual` without a gate), then `rms_norm`: (new residual, normed)."""
    x = residual + update
    return x, rms_norm(x, weight, eps)


def ada_rms_norm(x, modulation, eps: float):
    """lerobot's adaptive RMSNorm given its `dense(cond)`: (normed, gate of the next residual)."""
    scale, shift, gate = modulation[:, None].chunk(3, dim=-1)
    return (_rms(x, eps) * (1 + scale.float()) + shift.float()).to(x.dtype), gate.to(x.dtype)


def add_ada_rms_norm(residual, update, gate, modulation, eps: float):
    """The gated residual add (lerobot's `_gated_residual`), then `ada_rms_norm`: (new residual, normed, gate)."""
    x = residual + update * gate
    return x, *ada_rms_norm(x, modulation, eps)


def rotary(q, k, cos, sin):
    """transformers' `apply_rotary_pos_emb` (Gemma's rotate-half convention) for [B, heads, L, head_dim]."""
    import torch

    cos, sin = cos[:, None], sin[:, None]
    half = q.shape[-1] // 2

    def rotate(x):
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    return q * cos + rotate(q) * sin, k * cos + rotate(k) * sin


def gelu_mul(gate, up):
    """Gemma's MLP activation (`gelu_pytorch_tanh`) times the up projection."""
    import torch.nn.functional as F  # noqa: N812

    return F.gelu(gate, approximate="tanh") * up


class Ops:
    """The elementwise steps, as written (CPU) or each compiled into a fused kernel (CUDA). Compiled for dynamic
    shapes from the first call: the same function runs on the prefix and on the action tokens, for both Gemmas and
    every batch bucket, and a recompilation per shape would soon exceed torch.compile's limit of 8."""

    def __init__(self, compiled: bool):
        import torch

        self.compiled = compiled
        wrap = functools.partial(torch.compile, fullgraph=True, dynamic=True) if compiled else (lambda fn: fn)
        if compiled and "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ:
            # in this process: a pool of compile workers (one per core, each importing torch while the env workers
            # need the cores) and its shutdown cost more than they save on these few small kernels (a run's first
            # wave 20.7 s against 22.8-26.2 s with the pool, benchmarks/README.md section 0e)
            import torch._inductor.config

            torch._inductor.config.compile_threads = 1
        self.rms_norm, self.add_rms_norm = wrap(rms_norm), wrap(add_rms_norm)
        self.ada_rms_norm, self.add_ada_rms_norm = wrap(ada_rms_norm), wrap(add_ada_rms_norm)
        self.rotary, self.gelu_mul = wrap(rotary), wrap(gelu_mul)


@functools.cache
def ops_for(device_type: str) -> Ops:
    """Compiled on CUDA where Triton, torch.compile's GPU code generator, is installed (it ships with torch's CUDA
    wheels for Linux); as written elsewhere."""
    import importlib.util

    return Ops(compiled=device_type == "cuda" and importlib.util.find_spec("triton") is not None)


def check_supported(model) -> None:
    """The pass assumes what lerobot 0.6.1 builds: Gemma layers with the tanh GELU and rotary embeddings."""
    from transformers.activations import GELUTanh

    for layer in model.layers:
        if not isinstance(layer.mlp.act_fn, GELUTanh):
            raise ValueError(f"bench's Gemma pass expects the tanh GELU, got {type(layer.mlp.act_fn).__name__}")


def gemma_pass(model, embeds, mask, positions, cache, modulations=None, keys_only: bool = False):
    """`model.forward(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
    adarms_cond=cond).last_hidden_state` of a lerobot `PiGemmaModel`: `mask` is the 4-D boolean mask over the
    cache's keys (True: may attend); `modulations` (Pi0.5's action expert; else None) maps each adaptive norm to
    its `dense(cond)`, which the caller computes (`pi_lerobot_sampling.time_modulations`).
    `keys_only`: only the cache's keys and values are wanted (the prefix pass, whose output Pi never reads), so the
    last layer stops once it has written them and None is returned."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from transformers.models.gemma.modeling_gemma import repeat_kv

    ops = ops_for(embeds.device.type)
    hidden = embeds
    if model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16:
        hidden = hidden.to(torch.bfloat16)
    cos, sin = model.rotary_emb(hidden, positions)
    batch, length = hidden.shape[:2]

    def norm(module, residual, update, gate):
        """(new residual, normed, gate of the next residual); no `update` before the first layer."""
        if modulations is not None and module.dense is not None:
            modulation = modulations[module]
            if update is None:
                return residual, *ops.ada_rms_norm(residual, modulation, module.eps)
            return ops.add_ada_rms_norm(residual, update, gate, modulation, module.eps)
        weight = module.weight.detach()  # a plain tensor: torch.compile keeps a parameter's shape static
        if update is None:
            return residual, ops.rms_norm(residual, weight, module.eps), None
        return (*ops.add_rms_norm(residual, update, weight, module.eps), None)

    update = gate = None
    for layer in model.layers:
        attention = layer.self_attn
        hidden, normed, gate_in = norm(layer.input_layernorm, hidden, update, gate)
        shape = (batch, length, -1, attention.head_dim)
        q = attention.q_proj(normed).view(shape).transpose(1, 2)
        k = attention.k_proj(normed).view(shape).transpose(1, 2)
        v = attention.v_proj(normed).view(shape).transpose(1, 2)
        q, k = ops.rotary(q, k, cos, sin)
        k, v = cache.update(k, v, attention.layer_idx)
        if keys_only and layer is model.layers[-1]:
            return None
        # each key/value head once per query head of its group, as transformers' sdpa path does when given a mask
        k, v = repeat_kv(k, attention.num_key_value_groups), repeat_kv(v, attention.num_key_value_groups)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attention.scaling)
        out = attention.o_proj(out.transpose(1, 2).reshape(batch, length, -1))
        hidden, normed, gate = norm(layer.post_attention_layernorm, hidden, out, gate_in)
        mlp = layer.mlp
        update = mlp.down_proj(ops.gelu_mul(mlp.gate_proj(normed), mlp.up_proj(normed)))
    _, normed, _ = norm(model.norm, hidden, update, gate)
    return normed
