"""bench's Pi inference replayed from CUDA graphs (bench.policies.pi_lerobot_graphs) on tiny real lerobot models.

Needs a CUDA GPU, so CI's CPU machine skips it; benchmarks/speed.sh runs it on the GPU machine (benchmarks/README.md
records the run). In float32, with TF32 off, a replay must compute lerobot's `sample_actions` and bench's eager path
for every row, whatever batch bucket the rows were padded to. On CUDA the replays include the elementwise steps that
torch.compile fused (`bench.policies.pi_lerobot_gemma`), so these tests also hold the fused kernels to lerobot's.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import require  # noqa: E402

require("lerobot.policies.pi0.modeling_pi0", "needs lerobot[pi]==0.6.1: pip install -e '.[lerobot]'")

import torch  # noqa: E402
from test_pi_lerobot import make_inputs, make_noise  # noqa: E402

from bench.policies.pi_lerobot_gemma import ops_for  # noqa: E402
from bench.policies.pi_lerobot_graphs import bucket  # noqa: E402
from bench.policies.pi_tiny import TinyLerobotPiBackend  # noqa: E402
from bench.policies.pi_types import MODELS  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run it on the GPU machine)")


def test_buckets_cover_every_batch_with_little_padding():
    assert [bucket(b) for b in (1, 2, 3, 5, 8, 9, 16, 17, 32, 33, 64, 65)] == [1, 2, 4, 8, 8, 16, 16, 24, 32, 40, 64,
                                                                               72]
    assert all(b <= bucket(b) < max(2 * b, b + 8) for b in range(1, 200))


@pytest.fixture(scope="module", params=MODELS)
def gpu_backend(request):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False  # SigLIP's patch embedding is a convolution
    return TinyLerobotPiBackend(request.param, seed=0, device="cuda")


def _with(backend, inference: str, inputs, noise) -> np.ndarray:
    saved = backend.inference
    backend.inference = inference
    try:
        return backend.sample_actions(inputs, noise=noise)
    finally:
        backend.inference = saved


@cuda
def test_replay_equals_lerobots_sample_actions(gpu_backend):
    """Batch 3 replays the bucket-4 graph (one padded row); a camera is absent from every row, another from one."""
    inputs, noise = make_inputs(3), make_noise(3)
    replayed = gpu_backend.sample_actions(inputs, noise=noise)
    assert gpu_backend._graphs.graphs, "the bench path on CUDA did not replay a graph"
    assert ops_for("cuda").compiled, "the elementwise steps were not compiled (is Triton installed?)"
    np.testing.assert_allclose(replayed, _with(gpu_backend, "lerobot", inputs, noise), atol=1e-4)
    assert np.abs(replayed).max() > 0.1


@cuda
def test_graphs_follow_new_inputs_and_batch_sizes(gpu_backend):
    """Replays take each call's inputs (nothing of the capture's stays), across buckets that share one memory pool."""
    for batch, seed in ((3, 10), (5, 11), (3, 12), (1, 13), (5, 14)):
        inputs, noise = make_inputs(batch, seed=seed), make_noise(batch, seed=seed)
        np.testing.assert_allclose(gpu_backend.sample_actions(inputs, noise=noise),
                                   _with(gpu_backend, "bench-eager", inputs, noise), atol=1e-4)
    assert {key[0] for key in gpu_backend._graphs.graphs} >= {1, 4, 8}
