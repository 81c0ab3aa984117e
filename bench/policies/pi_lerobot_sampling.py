"""bench's inference path for lerobot's Pi0 / Pi0.5 model (`LerobotPiBackend`, inference="bench", what `bench run`
uses): lerobot 0.6.1's `sample_actions`, computed with less work and the same result (tests/test_pi_lerobot.py holds
the two paths against each other), and SigLIP in bf16 as openpi runs it. torch and lerobot are imported when used.
"""

from __future__ import annotations


def vision_in_bf16(model) -> None:
    """Runs SigLIP and its projector in bf16, as openpi does; lerobot keeps them in float32 (for training),
    which at batch 64 made them a third of the call (float32 matmuls run at a fraction of the bf16 rate)."""
    import torch

    pwe = model.paligemma_with_expert
    pwe.paligemma.model.vision_tower.to(torch.bfloat16)
    pwe.paligemma.model.multi_modal_projector.to(torch.bfloat16)

    def embed_image(image):
        return pwe.paligemma.model.get_image_features(image.to(torch.bfloat16)).pooler_output

    pwe.embed_image = embed_image  # instance attribute: replaces lerobot's float32 cast for this model only


def sample_chunk(model, images, masks, lang_tokens, lang_masks, state, noise, num_steps: int, horizon: int):
    """lerobot's `sample_actions` (same prefix, same cached keys and values reused by every denoising step,
    same Euler steps from t=1 to 0), with changes that leave the result unchanged:
    - cameras absent from every row of the batch are left out of the prefix: their tokens are masked out of
      attention and do not advance the position ids, so they only cost SigLIP and Gemma work;
    - the prefix's keys and values sit in one buffer with room for the action tokens (`ChunkCache`), which
      each denoising step overwrites in place; lerobot copies the whole cache every step and appends to it;
    - attention is PyTorch's fused scaled-dot-product kernel instead of the eager softmax.
    """
    import torch
    from lerobot.policies.common.vla_utils import make_att_2d_masks
    from torch.nn.attention import SDPBackend, sdpa_kernel

    present = [i for i, m in enumerate(masks) if bool(m.any())]  # one host sync, before the GPU work
    images, masks = [images[i] for i in present], [masks[i] for i in present]
    # not cuDNN's attention: it failed ("mha_graph.execute") on the GPU machine in a process that also renders with
    # SAPIEN, as a reference loop or GPU physics does
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        pwe = model.paligemma_with_expert
        prefix_embs, prefix_pad, prefix_att = model.embed_prefix(images, masks, lang_tokens, lang_masks)
        attention = make_att_2d_masks(prefix_pad, prefix_att)[:, None]  # bool [B, 1, L, L]: True = may attend
        positions = torch.cumsum(prefix_pad, dim=1) - 1
        pwe.paligemma.model.language_model.config._attn_implementation = "sdpa"
        pwe.gemma_expert.model.config._attn_implementation = "sdpa"
        cache = ChunkCache()
        pwe.forward(attention_mask=attention, position_ids=positions, past_key_values=cache,
                    inputs_embeds=[prefix_embs, None], use_cache=True)
        prefix_len = positions[:, -1:] + 1  # prefix tokens that count, per row
        dt = -1.0 / num_steps
        x = noise
        for step in range(num_steps):
            time = torch.full((x.shape[0],), 1.0 + step * dt, dtype=torch.float32, device=x.device)
            x = x + dt * _velocity(model, cache, prefix_pad, prefix_len, state, x, time, horizon)
    return x


def _velocity(model, cache, prefix_pad, prefix_len, state, x, time, horizon: int):
    """One denoising step: the action expert attends to the cached prefix and to the action tokens."""
    import torch
    from lerobot.policies.common.vla_utils import make_att_2d_masks

    state_arg = () if state is None else (state,)  # pi0 embeds the state as the first action-expert token
    suffix_embs, suffix_pad, suffix_att, adarms_cond = model.embed_suffix(*state_arg, x, time)
    batch, suffix_len = suffix_pad.shape
    attention = torch.cat([prefix_pad[:, None, :].expand(batch, suffix_len, prefix_pad.shape[1]),
                           make_att_2d_masks(suffix_pad, suffix_att)], dim=2)[:, None]
    positions = prefix_len + torch.cumsum(suffix_pad, dim=1) - 1
    (_, suffix_out), _ = model.paligemma_with_expert.forward(
        attention_mask=attention, position_ids=positions, past_key_values=cache,
        inputs_embeds=[None, suffix_embs], use_cache=False, adarms_cond=[None, adarms_cond])
    return model.action_out_proj(suffix_out[:, -horizon:].to(torch.float32))


class ChunkCache:
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
