"""bench's Pi inference path replayed from CUDA graphs (`LerobotPiBackend` on a CUDA device, inference="bench").

An eager chunk of the full-size Pi0.5 launches thousands of small kernels from Python: below batch 32 the host's
launches are the bound, and inside `bench run` the launching thread shares the GIL with the simulation driver
(benchmarks/README.md, sections 2 and 3). A CUDA graph launches the whole chunk (prefix pass and every denoising
step of `pi_lerobot_sampling.sample_present`) as one replay.

A graph holds fixed shapes and addresses, so there is one per batch bucket (`bucket`), set of cameras present and
prompt width (`used_prompt`), captured on first use: the call's inputs are copied into the graph's own input
tensors, rows above the call's batch repeat its first row, and the output rows above it are dropped. Each row's
actions depend on that row alone (every operation of the model works row by row), so the padding changes no other
row; tests/test_pi_cuda_graphs.py holds the replay against lerobot's `sample_actions` on a GPU. All graphs share one
memory pool: only their inputs and outputs stay allocated between replays, and one call runs at a time (the engine
has one policy thread).
"""

from __future__ import annotations

from bench.policies.pi_lerobot_sampling import present_cameras, sample_present, used_prompt


def bucket(batch: int) -> int:
    """The batch a graph is captured for: a power of two up to 8, then the next multiple of 8 (a 32-slot lane
    asks for 32 rows; a wave's last steps ask for fewer)."""
    if batch <= 8:
        return 1 << (batch - 1).bit_length()
    return -(-batch // 8) * 8


class ChunkGraphs:
    """`sample_chunk` of one model, as CUDA graph replays keyed by (batch bucket, cameras present, prompt columns)."""

    def __init__(self, model, num_steps: int, horizon: int):
        import torch

        self.model = model
        self.num_steps = num_steps
        self.horizon = horizon
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple[int, tuple[int, ...], int], _Graph] = {}

    def __call__(self, images, masks, lang_tokens, lang_masks, state, noise):
        """The chunk's actions [B, horizon, 32]: a view of the graph's output, valid until the next call."""
        present = present_cameras(masks)
        lang_tokens, lang_masks = used_prompt(lang_tokens, lang_masks)
        inputs = [*(images[i] for i in present), *(masks[i] for i in present), lang_tokens, lang_masks, state, noise]
        key = (bucket(noise.shape[0]), tuple(present), lang_tokens.shape[1])
        if key not in self.graphs:
            self.graphs[key] = _Graph(self, key[0], inputs, len(present))
        return self.graphs[key].replay(inputs)

    def run(self, inputs: list, cameras: int):
        *per_camera, tokens, token_masks, state, noise = inputs
        return sample_present(self.model, per_camera[:cameras], per_camera[cameras:], tokens, token_masks, state,
                              noise, self.num_steps, self.horizon)


class _Graph:
    """One captured chunk: its input tensors (filled before each replay) and its output tensor."""

    def __init__(self, owner: ChunkGraphs, size: int, inputs: list, cameras: int):
        import torch

        self.inputs = [None if t is None else torch.empty((size, *t.shape[1:]), dtype=t.dtype, device=t.device)
                       for t in inputs]
        self._fill(inputs)
        side = torch.cuda.Stream()  # warm-up off the capturing stream, as torch.cuda.graphs asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            owner.run(self.inputs, cameras)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=owner.pool):
            self.output = owner.run(self.inputs, cameras)

    def _fill(self, inputs: list) -> None:
        """The call's rows, then its first row repeated up to the bucket."""
        batch = inputs[-1].shape[0]
        for target, source in zip(self.inputs, inputs, strict=True):
            if target is not None:
                target[:batch].copy_(source)
                target[batch:].copy_(source[:1].expand_as(target[batch:]))

    def replay(self, inputs: list):
        self._fill(inputs)
        self.graph.replay()
        return self.output[: inputs[-1].shape[0]]
