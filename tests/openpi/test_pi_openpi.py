"""The openpi (JAX) backend of Pi0 / Pi0.5, on openpi's tiny ("dummy" Gemma) model with random weights.

Runs in its own environment (openpi pins numpy<2; lerobot needs numpy>=2):
    make test-openpi   (scripts/setup-openpi-env.sh, then .venv-openpi/bin/python -m pytest -q tests/openpi)
bench itself is installed there too (numpy 1.26), so tests/conftest.py's fixtures work as in the main suite.
The tiny model still has a full-size SigLIP (~430M parameters): it is built once per session and used at B<=2, in
float32 (deterministic and faster than bfloat16 on CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import require  # tests/conftest.py: the main suite's, a parent folder's conftest

# not plain "openpi": with pytest's rootdir on sys.path, this very folder (tests/openpi) imports as a namespace package
require("openpi.models.pi0", "needs the openpi environment: scripts/setup-openpi-env.sh")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jax 0.5 / flax 0.10 internals, not ours

from bench.policies.pi_openpi import OpenpiPiBackend, TinyOpenpiPiBackend, params_fingerprint  # noqa: E402
from bench.policies.pi_tiny import neutral_norm_stats  # noqa: E402
from bench.policies.pi_types import IMAGE_KEYS, MAX_TOKEN_LEN, PiInputs  # noqa: E402


def make_inputs(batch: int, seed: int = 0, prompt_len: int = 12) -> PiInputs:
    rng = np.random.default_rng(seed)
    tokens = np.zeros((batch, 48), np.int64)
    tokens[:, :prompt_len] = rng.integers(2, 1000, (batch, prompt_len))
    masks = tokens != 0
    return PiInputs(
        images={k: rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8) for k in IMAGE_KEYS},
        image_masks={"base_0_rgb": np.ones(batch, bool), "left_wrist_0_rgb": np.ones(batch, bool),
                     "right_wrist_0_rgb": np.zeros(batch, bool)},
        state=rng.standard_normal((batch, 32)).astype(np.float32),
        tokens=tokens,
        token_masks=masks,
    )


def row(inputs: PiInputs, i: int) -> PiInputs:
    return inputs.take(slice(i, i + 1))


def make_noise(batch: int, horizon: int = 50, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, horizon, 32)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_pi0() -> TinyOpenpiPiBackend:
    return TinyOpenpiPiBackend("pi0", dtype="float32", seed=0)


@pytest.fixture(scope="session")
def tiny_pi05() -> TinyOpenpiPiBackend:
    return TinyOpenpiPiBackend("pi05", dtype="float32", seed=0)


@pytest.fixture(scope="session")
def inputs2() -> PiInputs:
    return make_inputs(2)


def test_tiny_pi0_actions(tiny_pi0, inputs2):
    assert (tiny_pi0.action_horizon, tiny_pi0.max_token_len) == (50, MAX_TOKEN_LEN["pi0"])
    actions = tiny_pi0.sample_actions(inputs2)
    assert actions.shape == (2, 50, 32) and actions.dtype == np.float32
    assert np.isfinite(actions).all()
    # without explicit noise, every call draws new noise (seed + call counter)
    assert not np.allclose(actions, tiny_pi0.sample_actions(inputs2))
    assert tiny_pi0.fingerprint() == "tiny-random-0-pi0"


def test_batched_matches_one_at_a_time(tiny_pi0, inputs2):
    noise = make_noise(2)
    batched = tiny_pi0.sample_actions(inputs2, noise=noise)
    singles = np.concatenate([tiny_pi0.sample_actions(row(inputs2, i), noise=noise[i:i + 1]) for i in range(2)])
    # Rows never interact in the model, so only float32 rounding differs: XLA compiles a separate program per batch
    # size, whose matmul tiling/summation order can differ, and 10 flow steps accumulate it. Hence not bit equality.
    np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-4)
    # the same noise through the same program is bit-reproducible
    np.testing.assert_array_equal(batched, tiny_pi0.sample_actions(inputs2, noise=noise))


def test_save_load_roundtrip(tiny_pi0, inputs2, tmp_path):
    tiny_pi0.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "params" / "_METADATA").is_file()
    loaded = TinyOpenpiPiBackend("pi0", tmp_path / "ckpt", dtype="float32", seed=123)
    fingerprint = loaded.fingerprint()
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0  # a sha256 prefix over the params files
    noise = make_noise(2, seed=7)
    np.testing.assert_array_equal(loaded.sample_actions(inputs2, noise=noise), tiny_pi0.sample_actions(inputs2, noise=noise))


def test_missing_checkpoint(tmp_path):
    missing = tmp_path / "no_such_step"
    with pytest.raises(FileNotFoundError, match="no_such_step"):
        OpenpiPiBackend("pi0", missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="params"):
        OpenpiPiBackend("pi0", tmp_path / "empty")
    (tmp_path / "partial" / "params").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="_METADATA"):
        OpenpiPiBackend("pi0", tmp_path / "partial")
    with pytest.raises(FileNotFoundError, match="none given"):
        OpenpiPiBackend("pi0")  # neither a checkpoint nor random_init (full-size random weights: benchmarks only)
    with pytest.raises(ValueError, match="not both"):
        OpenpiPiBackend("pi0", tmp_path / "partial", random_init=True)


def test_tiny_pi05_actions(tiny_pi05):
    backend = tiny_pi05
    assert (backend.action_horizon, backend.max_token_len) == (50, MAX_TOKEN_LEN["pi05"])
    actions = backend.sample_actions(make_inputs(2, seed=3), noise=make_noise(2))
    assert actions.shape == (2, 50, 32) and actions.dtype == np.float32
    assert np.isfinite(actions).all()
    assert backend.fingerprint() == "tiny-random-0-pi05"


@pytest.mark.timeout(900)
def test_bench_run_with_an_openpi_checkpoint(bench, tmp_path, spm_model, tiny_pi05):
    """`bench run` end to end on openpi's JAX Pi0.5 (tiny, random weights) saved as an openpi step folder, with its
    norm stats in assets/<asset_id>/ and the backend found from the layout."""
    from bench.results import read_episodes

    from conftest import read_manifest, run_dir_of

    checkpoint = tmp_path / "pi05_maniskill" / "999"
    tiny_pi05.save(checkpoint)
    (checkpoint / "assets" / "maniskill").mkdir(parents=True)
    (checkpoint / "assets" / "maniskill" / "norm_stats.json").write_text(json.dumps(neutral_norm_stats(8, 7)))
    preset = tmp_path / "pi05-tiny.toml"  # a user's copy of policies/pi05.toml, for the float32 model; that the
    # checkpoint holds a tiny model, bench reads from the marker TinyOpenpiPiBackend.save left beside its params
    preset.write_text((Path(__file__).parents[2] / "policies" / "pi05.toml").read_text()
                      .replace('dtype = "bfloat16"', 'dtype = "float32"'))
    output = tmp_path / "out"
    code, text = bench("run", "--policy", str(preset), "--checkpoint", str(checkpoint), "--tokenizer",
                       str(spm_model), "--tasks", "PickCube-v1", "--episodes", "2", "--num-envs", "2",
                       "--replan-steps", "25", "--output", str(output))
    assert code == 0, text
    run = run_dir_of(output)
    episodes = read_episodes(run)
    assert len(episodes) == 2 and (episodes["steps"] == 100).all()
    described = read_manifest(run)["policy"]["describe"]
    assert (described["model"], described["backend"], described["normalization"]) == ("pi05", "openpi", "quantiles")
    assert described["norm_stats"].endswith("assets/maniskill/norm_stats.json")
    assert described["checkpoint_fingerprint"] == params_fingerprint(checkpoint / "params")
    assert (described["action_horizon"], described["denoising_steps"]) == (50, 10)
    assert described["tiny"] is True and described["transforms"][-3:] == ["prompt_with_state(256 bins)",
                                                                          "tokenize(200)", "pad_state(32)"]

