"""bench's Pi0/Pi0.5 transforms held against openpi's own code, in the openpi environment (make test-openpi):
- normalization: `openpi.transforms.Normalize` / `Unnormalize` (MEAN_STD and quantiles), with stats read by openpi's
  `openpi.shared.normalize.load` from the same norm_stats.json, then `PadStatesAndActions`;
- prompts and tokens: `openpi.transforms.TokenizePrompt` with `openpi.models.tokenizer.PaligemmaTokenizer`, which
  loads the test's SentencePiece model from where openpi's download cache keeps PaliGemma's ($OPENPI_DATA_HOME);
- resize with padding: `openpi.transforms.ResizeImages` (which calls `openpi_client.image_tools.resize_with_pad`, PIL),
  and the model's own fallback for images not at 224, `openpi.shared.image_tools.resize_with_pad` (JAX).

bench's openpi convention (bench.policies.pi_normalize) does openpi's arithmetic: the state normalized in float64 and
discretized from there (so the token tests run openpi's own Normalize then TokenizePrompt on the raw float32 state),
quantile un-normalization computing (x + 1) / 2 in the actions' dtype. Known differences, asserted as such: openpi's
JAX resize rounds differently from PIL's: pixel values differ by at most 1 level, the padding is the same.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import require

require("openpi.transforms", "needs the openpi environment: scripts/setup-openpi-env.sh")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jax 0.5 / flax 0.10 internals, not ours

from openpi import transforms as openpi_transforms  # noqa: E402
from openpi.models.tokenizer import PaligemmaTokenizer  # noqa: E402
from openpi.shared import normalize as openpi_normalize  # noqa: E402

from bench.policies.pi_checkpoint import load_norm_stats  # noqa: E402
from bench.policies.pi_transforms import (Frame, Pipeline, PromptTokenizer, action_dims,  # noqa: E402
                                          normalize, pad_state, prompt, prompt_with_state, resize_with_pad, tokenize,
                                          unnormalize)
from bench.policies.pi_types import MAX_TOKEN_LEN, MODEL_DIM  # noqa: E402

TASKS = Path(__file__).parents[2] / "tasks"
INSTRUCTIONS = [tomllib.loads(p.read_text())["instruction"] for p in sorted(TASKS.glob("*-v1.toml"))] + [
    "  pick_up the\ncube ", "", "Ünïcode — ロボット", "stack " * 120]  # odd spacing, empty, byte fallback, truncation


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory) -> Path:
    """A norm_stats.json in openpi's format: 8 state dims, 7 action dims, stats of different scales."""
    rng = np.random.default_rng(0)

    def stats(n: int) -> dict:
        q01 = rng.uniform(-3, -0.5, n)
        return {"mean": rng.normal(size=n).tolist(), "std": rng.uniform(0.05, 3, n).tolist(), "q01": q01.tolist(),
                "q99": (q01 + rng.uniform(0.1, 4, n)).tolist()}

    folder = tmp_path_factory.mktemp("assets")
    (folder / "norm_stats.json").write_text(json.dumps({"norm_stats": {"state": stats(8), "actions": stats(7)}}))
    return folder / "norm_stats.json"


def raw_states(rows: int) -> np.ndarray:
    """float32 robot states, some far outside the stats' range (normalized beyond [-1, 1]), some on exact values."""
    rng = np.random.default_rng(1)
    states = rng.normal(scale=3.0, size=(rows, 8)).astype(np.float32)
    states[:4] = [[0] * 8, [-10] * 8, [10] * 8, [1e-7] * 8]
    return states


@pytest.mark.parametrize("use_quantiles", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalize_and_pad_state_equal_openpis(stats_file, use_quantiles, dtype):
    state = raw_states(64).astype(dtype)
    theirs = openpi_transforms.compose([
        openpi_transforms.Normalize(openpi_normalize.load(stats_file.parent), use_quantiles=use_quantiles),
        openpi_transforms.PadStatesAndActions(MODEL_DIM)])({"state": state})["state"]
    norm = load_norm_stats(stats_file, use_quantiles)["state"]
    assert norm.convention == "openpi" and theirs.dtype == np.float64  # openpi computes in float64 (its stats')
    frame = Pipeline([normalize(norm)])(Frame({}, [""] * len(state), state=state))
    np.testing.assert_array_equal(frame.state, theirs[:, :8])  # what Pi0.5 discretizes: openpi's float64, exactly
    ours = pad_state(MODEL_DIM)(frame).state
    assert ours.shape == theirs.shape == (64, MODEL_DIM) and ours.dtype == np.float32  # the model's dtype
    np.testing.assert_array_equal(ours, theirs.astype(np.float32))


@pytest.mark.parametrize("use_quantiles", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unnormalize_equals_openpis_on_the_controllers_dims(stats_file, use_quantiles, dtype):
    """Model-space chunks [B, 50, 32] -> the controller's 7 dims. (Beyond the stats' dims openpi's MEAN_STD scales by
    1 + 1e-6 where bench passes through; those dims are dropped before the controller either way.)"""
    actions = np.random.default_rng(2).normal(scale=1.5, size=(4, 50, MODEL_DIM)).astype(dtype)
    theirs = openpi_transforms.Unnormalize({"actions": openpi_normalize.load(stats_file.parent)["actions"]},
                                           use_quantiles=use_quantiles)({"actions": actions})["actions"]
    theirs = theirs[..., :7].astype(dtype)
    norm = load_norm_stats(stats_file, use_quantiles)["actions"]
    ours = Pipeline([unnormalize(norm), action_dims(7)])(actions)
    assert ours.shape == (4, 50, 7) and ours.dtype == dtype
    # exact, also for quantiles on float32 actions: openpi computes (x + 1) / 2 in float32, and so does bench
    np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def openpi_data_home(tmp_path_factory, spm_model) -> Path:
    """openpi's download cache with the test's SentencePiece model where PaligemmaTokenizer looks for PaliGemma's
    (`maybe_download("gs://big_vision/paligemma_tokenizer.model")` -> $OPENPI_DATA_HOME/big_vision/...)."""
    home = tmp_path_factory.mktemp("openpi_data_home")
    (home / "big_vision").mkdir()
    (home / "big_vision" / "paligemma_tokenizer.model").write_bytes(spm_model.read_bytes())
    return home


def openpi_tokens(stats_file: Path, max_len: int, use_quantiles: bool, discrete_state_input: bool,
                  states: np.ndarray) -> list[dict]:
    """openpi's own input chain on the raw float32 states: Normalize (float64), then TokenizePrompt."""
    chain = openpi_transforms.compose([
        openpi_transforms.Normalize(openpi_normalize.load(stats_file.parent), use_quantiles=use_quantiles),
        openpi_transforms.TokenizePrompt(PaligemmaTokenizer(max_len), discrete_state_input=discrete_state_input)])
    return [chain({"prompt": instruction, "state": state}) for instruction, state in zip(INSTRUCTIONS, states)]


# (model, discrete_state_input): Pi0; Pi0.5 with the state in its prompt (openpi's default); Pi0.5 without it
# (openpi's pi05_libero: `Pi0Config(pi05=True, action_horizon=10, discrete_state_input=False)`)
VARIANTS = [("pi0", False), ("pi05", True), ("pi05", False)]


@pytest.mark.parametrize("model,discrete_state_input", VARIANTS)
def test_prompt_tokens_equal_openpis(stats_file, spm_model, openpi_data_home, monkeypatch, model,
                                     discrete_state_input):
    monkeypatch.setenv("OPENPI_DATA_HOME", str(openpi_data_home))
    max_len = MAX_TOKEN_LEN[model]
    norm = load_norm_stats(stats_file, use_quantiles=model == "pi05")["state"]
    states = raw_states(len(INSTRUCTIONS))
    frame = Pipeline([normalize(norm), prompt_with_state() if discrete_state_input else prompt(),
                      tokenize(PromptTokenizer(spm_model, max_len), pi0_format=not discrete_state_input)])(
        Frame({}, INSTRUCTIONS, state=states))
    assert ((frame.state < -1) | (frame.state > 1)).any()  # out-of-range states: bins -1 and 255
    theirs = openpi_tokens(stats_file, max_len, model == "pi05", discrete_state_input, states)
    for row, instruction in enumerate(INSTRUCTIONS):
        np.testing.assert_array_equal(frame.tokens[row], theirs[row]["tokenized_prompt"], err_msg=instruction)
        np.testing.assert_array_equal(frame.token_masks[row], theirs[row]["tokenized_prompt_mask"], err_msg=instruction)
    assert frame.token_masks[-1].all()  # the long instruction was truncated to max_len, as openpi does


def test_state_bins_follow_openpis_float64_near_bin_edges(stats_file, spm_model, openpi_data_home, monkeypatch):
    """States whose normalized value lies within float32 rounding of a bin edge: bench discretizes openpi's float64
    value, so the bins (and tokens) are openpi's; a float32 cast first would move some of them to the next bin."""
    monkeypatch.setenv("OPENPI_DATA_HOME", str(openpi_data_home))
    norm = load_norm_stats(stats_file, use_quantiles=True)["state"]
    edges = np.linspace(-1, 1, 257)[1:-1]
    rng = np.random.default_rng(4)
    # raw float32 states that normalize to just around bin edges (q01 + (edge + 1) / 2 * width, nudged by an ulp)
    targets = rng.choice(edges, size=(len(INSTRUCTIONS), 8))
    raw = norm.q01 + (targets + 1) / 2 * (norm.q99 - norm.q01 + 1e-6)
    direction = np.where(np.arange(len(raw))[:, None] % 2, np.inf, -np.inf).astype(np.float32)
    states = np.nextafter(raw.astype(np.float32), direction)
    frame = Pipeline([normalize(norm)])(Frame({}, INSTRUCTIONS, state=states))
    casted = frame.state.astype(np.float32).astype(np.float64)
    assert (np.digitize(casted, edges) != np.digitize(frame.state, edges)).any()  # the float32 cast would differ
    frame = Pipeline([prompt_with_state(), tokenize(PromptTokenizer(spm_model, 200), pi0_format=False)])(frame)
    theirs = openpi_tokens(stats_file, 200, True, True, states)
    for row, instruction in enumerate(INSTRUCTIONS):
        np.testing.assert_array_equal(frame.tokens[row], theirs[row]["tokenized_prompt"], err_msg=instruction)


SIZES = [(224, 224), (256, 256), (128, 128), (64, 64), (225, 224), (480, 640), (720, 1280), (100, 200), (300, 200),
         (512, 288), (37, 501)]


def camera_images(height: int, width: int) -> np.ndarray:
    """Two uint8 images: noise, and a smooth pattern (no pixel of either is 0, so black means padding)."""
    rng = np.random.default_rng(height * width)
    y, x = np.mgrid[0:height, 0:width]
    smooth = ((np.sin(x / 17) + np.cos(y / 23)) * 60 + 128).astype(np.uint8)
    return np.stack([rng.integers(1, 256, (height, width, 3), dtype=np.uint8), np.stack([smooth] * 3, -1)])


def bench_resized(images: np.ndarray) -> np.ndarray:
    return resize_with_pad(224)(Frame({}, [""] * len(images), images={"base_0_rgb": images})).images["base_0_rgb"]


@pytest.mark.parametrize("height,width", SIZES)
def test_resize_with_pad_equals_openpis_resize_images(height, width):
    """openpi's ResizeImages transform (openpi_client.image_tools.resize_with_pad: PIL, bilinear), bit for bit."""
    images = camera_images(height, width)
    theirs = openpi_transforms.ResizeImages(224, 224)({"image": {"base_0_rgb": images}})["image"]["base_0_rgb"]
    ours = bench_resized(images)
    assert ours.shape == theirs.shape == (2, 224, 224, 3) and ours.dtype == theirs.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("height,width", SIZES)
def test_resize_with_pad_is_within_one_level_of_openpis_model_side_resize(height, width):
    """What openpi's model does to an image that did not arrive at 224 (`openpi.models.model.preprocess_observation`:
    `openpi.shared.image_tools.resize_with_pad`, JAX): the same padding, values within one level (rounding)."""
    from openpi.shared import image_tools

    images = camera_images(height, width)
    theirs = np.asarray(image_tools.resize_with_pad(images, 224, 224))
    ours = bench_resized(images)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= (0 if (height, width) == (224, 224) else 1) and diff.mean() < 0.25
    np.testing.assert_array_equal(ours == 0, theirs == 0)  # the same pixels are padding
