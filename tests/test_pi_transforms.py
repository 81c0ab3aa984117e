"""Pi0/Pi0.5 transforms: what each step does and how a pipeline composes them. Whether the formulas are openpi's is
tested against openpi's own code in its environment (tests/openpi/test_pi_transforms_openpi.py), not here."""

import numpy as np
import pytest

from bench.policies.pi_transforms import (Frame, Normalizer, Pipeline, PromptTokenizer, action_dims, cameras,
                                          normalize, pad_state, pad_to, pi05_prompt, prompt, prompt_with_state,
                                          resize_with_pad, state, tokenize, unnormalize)
from bench.policies.pi_types import IMAGE_KEYS, MODEL_DIM, PiInputs

CAMERAS = {"base_0_rgb": "base_camera", "left_wrist_0_rgb": "hand_camera", "right_wrist_0_rgb": None}
STATS = {"mean": np.arange(8.0), "std": np.full(8, 2.0), "q01": np.full(8, -3.0), "q99": np.full(8, 5.0)}


def observation(batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"sensor_data/base_camera/rgb": rng.integers(0, 256, (batch, 120, 160, 3), dtype=np.uint8),
            "sensor_data/hand_camera/rgb": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
            "agent/qpos": rng.uniform(-4, 6, (batch, 9)).astype(np.float32)}


def pipeline(model: str, spm_model, use_quantiles: bool) -> Pipeline:
    norm = Normalizer.from_stats(STATS, use_quantiles)
    return Pipeline([cameras(CAMERAS), resize_with_pad(224), state("qpos8"), normalize(norm),
                     prompt_with_state() if model == "pi05" else prompt(),
                     tokenize(PromptTokenizer(spm_model, 200 if model == "pi05" else 48), pi0_format=model == "pi0"),
                     pad_state(MODEL_DIM)])


def test_pi05_prompt_carries_the_discretized_state():
    prompt = pi05_prompt(" pick_cube\nnow ", np.array([-1.0, 0.0, 0.999, -1.5, 7.0]))
    assert prompt == "Task: pick cube now, State: 0 128 255 -1 255;\nAction: "


def test_cameras_then_resize_absent_camera_is_black_with_mask_false():
    obs = observation()
    frame = Pipeline([cameras(CAMERAS), resize_with_pad(224)])(Frame(obs, ["a", "b"]))
    assert set(frame.images) == set(IMAGE_KEYS)
    assert frame.images["left_wrist_0_rgb"] is obs["sensor_data/hand_camera/rgb"]  # already 224: untouched
    base = frame.images["base_0_rgb"]  # 160x120 -> 224x168, black bars 28 high
    assert base.shape == (2, 224, 224, 3) and (base[:, :28] == 0).all() and (base[:, 196:] == 0).all()
    assert (frame.images["right_wrist_0_rgb"] == 0).all() and frame.images["right_wrist_0_rgb"].dtype == np.uint8
    assert [frame.image_masks[k].tolist() for k in IMAGE_KEYS] == [[True, True], [True, True], [False, False]]


def test_an_absent_camera_needs_the_resize_step():
    frame = cameras(CAMERAS)(Frame(observation(), ["a", "b"]))
    with pytest.raises(ValueError, match="right_wrist_0_rgb"):
        frame.inputs()


@pytest.mark.parametrize("use_quantiles", [False, True])
def test_normalization_round_trips_and_leaves_padding(use_quantiles):
    norm = Normalizer.from_stats(STATS, use_quantiles)
    x = pad_to(np.random.default_rng(0).normal(size=(5, 8)), 32)
    y = norm.normalize(x)
    assert not np.allclose(y[:, :8], x[:, :8])
    np.testing.assert_array_equal(y[:, 8:], 0)  # dims beyond the stats pass through
    np.testing.assert_allclose(norm.unnormalize(y), x, atol=1e-12)
    assert norm.normalize(x.astype(np.float32)).dtype == np.float32  # computed in float64, returned as given


def test_quantile_normalization_needs_quantiles():
    with pytest.raises(ValueError, match="q01/q99"):
        Normalizer.from_stats({"mean": [0.0], "std": [1.0]}, use_quantiles=True)


def test_tokenizer_pads_with_zeros_and_truncates(spm_model):
    tokens, masks = PromptTokenizer(spm_model, max_len=48)(["Push and move a cube to a goal region."], pi0_format=True)
    assert tokens.shape == masks.shape == (1, 48) and tokens.dtype == np.int64
    n = masks[0].sum()
    assert 0 < n < 48 and masks[0, :n].all() and (tokens[0, n:] == 0).all()
    short, short_masks = PromptTokenizer(spm_model, max_len=5)(["Push and move a cube to a goal region."], False)
    assert short_masks.all() and (short[0] == tokens[0, :5]).all()  # truncated, never longer than the model takes


@pytest.mark.parametrize("model", ["pi0", "pi05"])
def test_pipeline_builds_model_inputs(spm_model, model):
    steps = pipeline(model, spm_model, use_quantiles=model == "pi05")
    obs = observation()
    inputs = steps(Frame(obs, ["pick_up the cube", "push the cube"])).inputs()
    assert isinstance(inputs, PiInputs)
    assert inputs.state.shape == (2, MODEL_DIM) and inputs.state.dtype == np.float32
    assert (inputs.state[:, 8:] == 0).all()
    np.testing.assert_array_equal(inputs.state[:, :8], Normalizer.from_stats(STATS, model == "pi05").normalize(
        obs["agent/qpos"][:, :8]))
    assert inputs.tokens.shape == (2, 200 if model == "pi05" else 48)
    # Pi0.5's prompt changes with the state, Pi0's does not
    moved = {**obs, "agent/qpos": obs["agent/qpos"] + 1}
    again = steps(Frame(moved, ["pick_up the cube", "push the cube"])).inputs()
    assert (again.tokens != inputs.tokens).any() == (model == "pi05")


def test_step_names_are_what_describe_records(spm_model):
    names = pipeline("pi05", spm_model, use_quantiles=True).names()
    assert names == ["cameras(base_camera->base_0_rgb, hand_camera->left_wrist_0_rgb, none->right_wrist_0_rgb)",
                     "resize_with_pad(224)", "state(qpos8)", "normalize(quantiles, openpi)",
                     "prompt_with_state(256 bins)",
                     "tokenize(200)", "pad_state(32)"]
    outputs = Pipeline([unnormalize(Normalizer.from_stats(STATS, False)), action_dims(7)])
    assert outputs.names() == ["unnormalize(mean_std, openpi)", "action_dims(7)"]
    actions = outputs(np.zeros((2, 50, MODEL_DIM), np.float32))
    assert actions.shape == (2, 50, 7)
    np.testing.assert_allclose(actions[0, 0], STATS["mean"][:7])
