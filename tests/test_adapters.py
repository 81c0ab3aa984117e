"""Adapters pinned against references: openpi's formulas, and properties a wrong adapter would break."""

import numpy as np
import pytest

from bench.adapters import (ActionChunker, Normalizer, discretize_state, pad_to, pi05_prompt, pi_images,
                            resize_with_pad)


def test_state_bins_equal_openpi_formula():
    x = np.concatenate([np.linspace(-1.2, 1.2, 2001), [-1.0, 1.0, 0.0, 1 - 1e-9, -1 + 1e-9]])
    reference = np.clip(np.floor((x + 1.0) * 128.0), -1, 255).astype(int)  # 256 equal bins over [-1, 1)
    np.testing.assert_array_equal(discretize_state(x), reference)
    np.testing.assert_array_equal(discretize_state(x), np.digitize(x, np.linspace(-1, 1, 257)[:-1]) - 1)


def test_pi05_prompt_carries_the_discretized_state():
    prompt = pi05_prompt(" pick_cube\nnow ", np.array([-1.0, 0.0, 0.999]))
    assert prompt == "Task: pick cube now, State: 0 128 255;\nAction: "


def test_resize_with_pad_keeps_orientation_and_aspect():
    image = np.zeros((1, 100, 200, 3), np.uint8)
    image[0, :50, :100] = [255, 0, 0]  # red top-left quadrant
    image[0, 50:, 100:] = [0, 0, 255]  # blue bottom-right quadrant
    out = resize_with_pad(image, 224, 224)
    assert out.shape == (1, 224, 224, 3)
    assert (out[0, :56] == 0).all() and (out[0, 168:] == 0).all()  # 200x100 -> 224x112, black bars 56 high
    assert tuple(out[0, 60, 10]) == (255, 0, 0)
    assert tuple(out[0, 160, 200]) == (0, 0, 255)
    assert tuple(out[0, 60, 200]) == (0, 0, 0)
    same = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    assert resize_with_pad(same, 224, 224) is same


def test_pi_images_zero_image_and_false_mask_for_absent_camera():
    obs = {"sensor_data/base_camera/rgb": np.full((2, 224, 224, 3), 7, np.uint8),
           "sensor_data/hand_camera/rgb": np.full((2, 224, 224, 3), 9, np.uint8)}
    images, masks = pi_images(obs, {"base_0_rgb": "base_camera", "left_wrist_0_rgb": "hand_camera",
                                    "right_wrist_0_rgb": None})
    assert (images["left_wrist_0_rgb"] == 9).all() and masks["left_wrist_0_rgb"].all()
    assert (images["right_wrist_0_rgb"] == 0).all() and not masks["right_wrist_0_rgb"].any()


@pytest.mark.parametrize("use_quantiles", [False, True])
def test_normalization_round_trips_and_matches_openpi(use_quantiles):
    rng = np.random.default_rng(0)
    stats = {"mean": rng.normal(size=8), "std": rng.uniform(0.1, 2, 8), "q01": rng.uniform(-3, -1, 8),
             "q99": rng.uniform(1, 3, 8)}
    norm = Normalizer.from_stats(stats, use_quantiles)
    x = pad_to(rng.normal(size=(5, 8)), 32)
    y = norm.normalize(x)
    if use_quantiles:
        expected = (x[:, :8] - stats["q01"]) / (stats["q99"] - stats["q01"] + 1e-6) * 2 - 1
    else:
        expected = (x[:, :8] - stats["mean"]) / (stats["std"] + 1e-6)
    np.testing.assert_allclose(y[:, :8], expected)
    np.testing.assert_array_equal(y[:, 8:], 0)  # padding passes through
    np.testing.assert_allclose(norm.unnormalize(y), x, atol=1e-12)


def test_quantile_normalization_needs_quantiles():
    with pytest.raises(ValueError, match="q01/q99"):
        Normalizer.from_stats({"mean": [0.0], "std": [1.0]}, use_quantiles=True)


def test_action_chunker_queues_are_per_slot():
    chunker = ActionChunker(num_slots=2, replan_steps=3, action_dim=2)
    chunks = np.arange(2 * 5 * 2, dtype=float).reshape(2, 5, 2)
    assert chunker.push(np.array([0, 1]), chunks, policy="p") == {}
    first = chunker.pop(range(2))
    np.testing.assert_array_equal(first, chunks[:, 0])
    chunker.reset(1)  # slot 1 starts a new episode: slot 0 keeps its queue
    np.testing.assert_array_equal(chunker.slots_needing_chunk(range(2)), [1])


def test_action_chunker_drops_only_the_slots_with_invalid_chunks():
    chunker = ActionChunker(num_slots=3, replan_steps=2, action_dim=2)
    chunks = np.ones((3, 4, 2))
    chunks[1, 3, 0] = np.nan  # past replan_steps still counts: the chunk is broken
    chunks[2, 0, 1] = np.inf
    bad = chunker.push(np.array([0, 1, 2]), chunks, policy="p")
    assert bad == {1: "policy 'p' returned NaN or infinite actions", 2: "policy 'p' returned NaN or infinite actions"}
    np.testing.assert_array_equal(chunker.pop(range(3)), [[1, 1], [0, 0], [0, 0]])  # dropped slots hold still
    chunker.pop(range(3))
    np.testing.assert_array_equal(chunker.slots_needing_chunk(range(3)), [0])  # dropped slots ask for nothing more
    chunker.reset(2)  # a new episode in slot 2 takes chunks again
    np.testing.assert_array_equal(chunker.slots_needing_chunk(range(3)), [0, 2])
    bad = chunker.push(np.array([0, 2]), np.zeros((2, 4, 3)), policy="p")
    assert set(bad) == {0, 2} and "expected [2, horizon, 2]" in bad[0]
