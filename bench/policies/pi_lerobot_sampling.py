"""bench's inference path for lerobot's Pi0 / Pi0.5 model (`LerobotPiBackend`, inference="bench", what `bench run`
uses): lerobot 0.6.1's `sample_actions`, computed with less work and the same result (tests/test_pi_lerobot.py holds
the two paths against each other), and SigLIP in bf16 as openpi runs it. Every step is a tensor operation on the
model's device, with no host round trip, so that `pi_lerobot_graphs` can capture a whole chunk in a CUDA graph.
torch and lerobot are imported when used.
"""

from __future__ import annotations

from bench.policies.pi_lerobot_gemma import gemma_pass


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


PROMPT_COLUMNS_MULTIPLE = 32  # a prompt is cut to a multiple of this: few lengths, so few CUDA graphs


def present_cameras(masks) -> list[int]:
    """Cameras present in at least one row of the batch (one host sync, before any GPU work)."""
    return [i for i, m in enumerate(masks) if bool(m.any())]


def used_prompt(lang_tokens, lang_masks):
    """The prompt's columns up to the last one a row of the batch uses, rounded up to a multiple of
    PROMPT_COLUMNS_MULTIPLE (at most all of them); one host sync, before any GPU work. Prompts are padded to the
    model's `tokenizer_max_length` (Pi0.5: 200 tokens), far more than an instruction and eight state numbers need,
    and the padding would go through every Gemma layer of the prefix (benchmarks/README.md, section 0d)."""
    used = lang_masks.any(dim=0).nonzero()
    width = int(used.max()) + 1 if len(used) else 1
    width = min(lang_masks.shape[1], -(-width // PROMPT_COLUMNS_MULTIPLE) * PROMPT_COLUMNS_MULTIPLE)
    return lang_tokens[:, :width], lang_masks[:, :width]


def sample_chunk(model, images, masks, lang_tokens, lang_masks, state, noise, num_steps: int, horizon: int):
    """lerobot's `sample_actions` (same prefix, same cached keys and values reused by every denoising step,
    same Euler steps from t=1 to 0), with changes that leave the result unchanged:
    - cameras absent from every row of the batch are left out of the prefix: their tokens are masked out of
      attention and do not advance the position ids, so they only cost SigLIP and Gemma work;
    - so are the prompt's last columns where every row has padding (`used_prompt`), for the same reason;
    - the prefix's keys and values sit in one buffer with room for the action tokens (`ChunkCache`), which
      each denoising step overwrites in place; lerobot copies the whole cache every step and appends to it;
    - the action tokens' attention mask and positions are the same at every step: built once per chunk;
    - Pi0.5's time conditioning is computed for all steps at once, one row per step (`time_modulations`);
    - attention is PyTorch's fused scaled-dot-product kernel instead of the eager softmax;
    - the Gemma passes are bench's (`pi_lerobot_gemma`): the same operations, the elementwise ones fused on CUDA,
      and the prefix pass ends once its last layer has written its keys and values (its output is never read).
    """
    present = present_cameras(masks)
    return sample_present(model, [images[i] for i in present], [masks[i] for i in present],
                          *used_prompt(lang_tokens, lang_masks), state, noise, num_steps, horizon)


def sample_present(model, images, masks, lang_tokens, lang_masks, state, noise, num_steps: int, horizon: int):
    """`sample_chunk` for cameras and prompt columns already chosen: device work only, the same for every call of
    these shapes."""
    import torch
    from lerobot.policies.common.vla_utils import make_att_2d_masks
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # not cuDNN's attention: it failed ("mha_graph.execute") on the GPU machine in a process that also renders with
    # SAPIEN, as a reference loop or GPU physics does
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        pwe = model.paligemma_with_expert
        prefix_embs, prefix_pad = _embed_prefix(pwe, images, masks, lang_tokens, lang_masks)
        # Pi's prefix is one bidirectional block: every present token attends to every other present token
        attention = make_att_2d_masks(prefix_pad, torch.zeros_like(prefix_pad))[:, None]  # bool [B, 1, L, L]
        positions = torch.cumsum(prefix_pad, dim=1) - 1
        cache = ChunkCache()
        gemma_pass(pwe.paligemma.model.language_model, prefix_embs, attention, positions, cache, keys_only=True)

        # the action tokens (Pi0: the state token first) attend to the present prefix and to each other as
        # lerobot's embed_suffix marks them: a 1 starts a block that earlier tokens cannot see
        batch = noise.shape[0]
        suffix_len = horizon + (state is not None)
        suffix_pad = torch.ones(batch, suffix_len, dtype=torch.bool, device=noise.device)
        suffix_blocks = torch.zeros(batch, suffix_len, dtype=torch.float32, device=noise.device)
        suffix_blocks[:, : suffix_len - horizon + 1] = 1  # [state,] first action token
        suffix_attention = torch.cat([prefix_pad[:, None, :].expand(batch, suffix_len, prefix_pad.shape[1]),
                                      make_att_2d_masks(suffix_pad, suffix_blocks)], dim=2)[:, None]
        suffix_positions = positions[:, -1:] + torch.cumsum(suffix_pad, dim=1)

        dt = -1.0 / num_steps
        modulations = time_modulations(model, num_steps) if state is None else [None] * num_steps
        x = noise
        for step in range(num_steps):
            if state is None:  # Pi0.5: the time conditions the action expert's norms
                suffix_embs = model.action_in_proj(x)
            else:
                time = torch.full((batch,), 1.0 + step * dt, dtype=torch.float32, device=x.device)
                suffix_embs = _embed_suffix_pi0(model, state, x, time)
            suffix_out = gemma_pass(pwe.gemma_expert.model, suffix_embs, suffix_attention, suffix_positions, cache,
                                    modulations[step])
            x = x + dt * model.action_out_proj(suffix_out[:, -horizon:].to(torch.float32))
    return x


def time_modulations(model, num_steps: int) -> list[dict]:
    """Pi0.5's action expert is conditioned on the denoising time alone (adaptive RMSNorm), and at a given step
    every row of every call has the same time, lerobot's 1 + step * dt. lerobot computes the condition and each
    norm's modulation `dense(cond)` at every step for every row: 37 float32 products per step, one weight matrix
    read each, ~7% of a batch-16 chunk's GPU time (benchmarks/README.md, section 0e). Here they are computed for
    all steps at once, one product per norm, on the device (so a CUDA graph holds them and sees the weights it
    replays). Per step: {adaptive norm module: its modulation [1, 3 * width]}, broadcast over the rows."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    expert = model.paligemma_with_expert.gemma_expert.model
    device = model.action_in_proj.weight.device
    # 1 + step * dt in double precision, then float32: lerobot's times (Python floats), computed on the device
    times = (1.0 + torch.arange(num_steps, dtype=torch.float64, device=device) * (-1.0 / num_steps)).float()
    cond = F.silu(model.time_mlp_out(F.silu(model.time_mlp_in(_time_embedding(model, times)))))
    norms = [norm for layer in expert.layers for norm in (layer.input_layernorm, layer.post_attention_layernorm)]
    per_norm = {norm: norm.dense(cond) for norm in [*norms, expert.norm] if norm.dense is not None}
    return [{norm: modulation[step:step + 1] for norm, modulation in per_norm.items()} for step in range(num_steps)]


def _embed_prefix(pwe, images, masks, lang_tokens, lang_masks):
    """lerobot's `embed_prefix` (each camera's SigLIP tokens, then the prompt's) without its attention-block list,
    which it turns into a tensor with a host-to-device copy that a CUDA graph cannot hold; here that list is all
    zeros (one block), built on the device by the caller."""
    import torch

    embs, pads = [], []
    for image, mask in zip(images, masks, strict=True):
        tokens = pwe.embed_image(image)
        embs.append(tokens)
        pads.append(mask[:, None].expand(tokens.shape[0], tokens.shape[1]))
    embs.append(pwe.embed_language_tokens(lang_tokens))
    pads.append(lang_masks)
    return torch.cat(embs, dim=1), torch.cat(pads, dim=1)


def _time_embedding(model, time):
    """lerobot's sine-cosine embedding of the denoising time [B] (float32), as its `embed_suffix` computes it."""
    from lerobot.policies.common.vla_utils import create_sinusoidal_pos_embedding

    config = model.config
    return create_sinusoidal_pos_embedding(time, model.action_in_proj.out_features, min_period=config.min_period,
                                           max_period=config.max_period, device=time.device).type(time.dtype)


def _embed_suffix_pi0(model, state, x, time):
    """lerobot's `embed_suffix` of Pi0: the state token, then the actions fused with the time."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    time_emb = _time_embedding(model, time)
    actions = model.action_in_proj(x)
    if model.state_proj.weight.dtype == torch.float32:
        state = state.to(torch.float32)
    state_token = model.state_proj(state)[:, None, :]
    fused = torch.cat([actions, time_emb[:, None, :].expand_as(actions)], dim=2)
    fused = model.action_time_mlp_out(F.silu(model.action_time_mlp_in(fused)))
    return torch.cat([state_token, fused], dim=1)


class ChunkCache:
    """Keys and values per layer for one chunk: the prefix's, written once, then the action tokens' of the
    current denoising step, overwritten in place by the next. `gemma_pass` calls `update` once per layer and pass
    (the name and arguments of transformers' Cache.update); the first `update` of a layer is the prefix pass."""

    def __init__(self):
        self.keys: list = []
        self.values: list = []
        self.prefix_len = 0

    def update(self, key, value, layer_idx: int):
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
