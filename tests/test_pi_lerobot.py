"""The lerobot (PyTorch) backend of Pi0 / Pi0.5 on tiny random-initialized models (real lerobot 0.6.1 classes, CPU).

The tiny models (~41M parameters, nearly all of it the hard-coded 257152-token vocabulary) run a chunk in well
under a second on CPU; each is built once per session.
"""

from __future__ import annotations

import hashlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import require  # noqa: E402

require("lerobot.policies.pi0.modeling_pi0", "needs lerobot[pi]==0.6.1: pip install -e '.[lerobot]'")

from bench.policies.pi_lerobot import LerobotPiBackend  # noqa: E402
from bench.policies.pi_tiny import TinyLerobotPiBackend  # noqa: E402
from bench.policies.pi_types import IMAGE_KEYS, MAX_TOKEN_LEN, MODELS, PiInputs  # noqa: E402


def make_inputs(batch: int, seed: int = 0, length: int = 48) -> PiInputs:
    rng = np.random.default_rng(seed)
    tokens = np.zeros((batch, length), np.int64)
    for i in range(batch):  # different prompt lengths per row, so padding differs inside the batch
        n = 5 + 3 * i
        tokens[i, :n] = rng.integers(2, 1000, n)
    masks = tokens != 0
    image_masks = {"base_0_rgb": np.ones(batch, bool), "left_wrist_0_rgb": np.ones(batch, bool),
                   "right_wrist_0_rgb": np.zeros(batch, bool)}
    if batch > 1:
        image_masks["left_wrist_0_rgb"][1] = False  # one row without its wrist camera
    images = {k: rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8) for k in IMAGE_KEYS}
    for k in IMAGE_KEYS:
        images[k][~image_masks[k]] = 0  # absent camera: black image
    return PiInputs(images=images, image_masks=image_masks, state=rng.standard_normal((batch, 32)).astype(np.float32),
                    tokens=tokens, token_masks=masks)


def row(inputs: PiInputs, i: int) -> PiInputs:
    return inputs.take(slice(i, i + 1))


def make_noise(batch: int, horizon: int = 50, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, horizon, 32)).astype(np.float32)


@pytest.fixture(scope="module", params=MODELS)
def backend(request) -> TinyLerobotPiBackend:
    return TinyLerobotPiBackend(request.param, seed=0)


@pytest.fixture(scope="module")
def inputs3() -> PiInputs:
    return make_inputs(3)


def test_shapes_and_config(backend, inputs3):
    assert backend.action_horizon == 50
    assert backend.max_token_len == MAX_TOKEN_LEN[backend.model_name]
    assert backend.fingerprint() == f"tiny-random-0-{backend.model_name}"
    assert sum(p.numel() for p in backend.policy.parameters()) < 50_000_000
    actions = backend.sample_actions(inputs3)
    assert actions.shape == (3, 50, 32) and actions.dtype == np.float32
    assert np.isfinite(actions).all()
    assert not np.allclose(actions, backend.sample_actions(inputs3))  # noise=None draws fresh noise each call


def test_batched_equals_one_at_a_time(backend, inputs3):
    noise = make_noise(3)
    batched = backend.sample_actions(inputs3, noise=noise)
    for i in range(3):
        single = backend.sample_actions(row(inputs3, i), noise=noise[i:i + 1])
        np.testing.assert_allclose(batched[i:i + 1], single, atol=1e-5, rtol=1e-5)
    # and the inputs matter: another row's observation with the same noise gives other actions
    assert not np.allclose(batched[0], batched[1], atol=1e-3)


def test_state_input(backend, inputs3):
    """Pi0 reads the continuous state; Pi0.5 does not (its state is discretized in the prompt tokens)."""
    noise = make_noise(3)
    other = make_inputs(3)
    other.state = other.state + 1.0
    changed = not np.allclose(backend.sample_actions(inputs3, noise=noise), backend.sample_actions(other, noise=noise))
    assert changed == (backend.model_name == "pi0")


def test_seeded_init_is_deterministic(backend):
    again = TinyLerobotPiBackend(backend.model_name, seed=0)
    inputs, noise = make_inputs(1), make_noise(1)
    np.testing.assert_array_equal(again.sample_actions(inputs, noise=noise), backend.sample_actions(inputs, noise=noise))


def test_save_load_roundtrip(backend, inputs3, tmp_path):
    folder = tmp_path / f"{backend.model_name}-tiny"
    backend.save(folder)
    loaded = TinyLerobotPiBackend(backend.model_name, folder)
    noise = make_noise(3, seed=7)
    np.testing.assert_array_equal(backend.sample_actions(inputs3, noise=noise), loaded.sample_actions(inputs3, noise=noise))
    fp = loaded.fingerprint()
    digest = hashlib.sha256(b"model.safetensors" + (folder / "model.safetensors").read_bytes()).hexdigest()
    assert fp == digest[:16]  # a hash of the weight file, not the tiny-random label
    assert (loaded.action_horizon, loaded.max_token_len) == (backend.action_horizon, backend.max_token_len)


def test_wrong_model_type_is_rejected(backend, tmp_path):
    backend.save(tmp_path / "ckpt")
    other = "pi0" if backend.model_name == "pi05" else "pi05"
    with pytest.raises(ValueError, match=f"'{backend.model_name}' policy"):
        TinyLerobotPiBackend(other, tmp_path / "ckpt")


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        LerobotPiBackend("pi0", missing)


@pytest.mark.parametrize("drop", ["model.safetensors", "config.json"])
def test_incomplete_checkpoint(tmp_path, drop):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        if name != drop:
            (folder / name).write_text("{}")
    with pytest.raises(FileNotFoundError) as info:
        LerobotPiBackend("pi0", folder)
    assert str(folder) in str(info.value) and drop in str(info.value)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown Pi model"):
        TinyLerobotPiBackend("pi1")
    with pytest.raises(ValueError, match="exactly one of"):
        LerobotPiBackend("pi0")  # neither checkpoint nor random_init
    with pytest.raises(FileNotFoundError, match="holds no tiny model"):
        TinyLerobotPiBackend("pi0", tmp_path)


def test_weights_that_do_not_fit_are_rejected(backend, tmp_path):
    """lerobot's from_pretrained only prints a warning and returns a random model when loading fails: we raise."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ckpt"
    backend.save(folder)
    weights = load_file(folder / "model.safetensors")
    weights.pop("model.action_in_proj.bias")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="could not load the weights"):
        TinyLerobotPiBackend(backend.model_name, folder)


def test_bench_inference_path_equals_lerobots_sample_actions(backend, inputs3):
    """bench's path (absent cameras left out of the prefix, the prompt cut after its last used column, fused
    attention) computes lerobot's result: in float32 the two agree to rounding, with a camera absent from every row
    and one absent from a single row, and prompts of 5, 8 and 11 tokens cut from 48 columns to 32."""
    noise = make_noise(3)
    ours = backend.sample_actions(inputs3, noise=noise)
    backend.inference = "lerobot"
    try:
        theirs = backend.sample_actions(inputs3, noise=noise)
    finally:
        backend.inference = "bench"
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.abs(theirs).max() > 0.1  # a real signal, not two zero tensors


def test_the_prompt_is_cut_after_the_last_column_a_row_uses():
    """Rounded up to a multiple of 32 (few CUDA graph shapes), never past the prompt's width; rows keep their own
    padding inside the cut."""
    import torch

    from bench.policies.pi_lerobot_sampling import used_prompt

    tokens = torch.arange(600).reshape(3, 200)
    masks = torch.zeros(3, 200, dtype=torch.bool)
    masks[0, :40], masks[1, :70] = True, True
    cut_tokens, cut_masks = used_prompt(tokens, masks)
    assert cut_tokens.shape == cut_masks.shape == (3, 96)
    assert torch.equal(cut_tokens, tokens[:, :96]) and torch.equal(cut_masks, masks[:, :96])
    masks[2, 195] = True  # a row using a late column keeps everything up to it: 196 rounds up past the width
    assert used_prompt(tokens, masks)[0].shape == (3, 200)
    assert used_prompt(tokens, torch.zeros(3, 200, dtype=torch.bool))[0].shape == (3, 32)
