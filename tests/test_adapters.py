"""Adapters: properties a wrong resize or action queue would break. (Pi0/Pi0.5's transforms: test_pi_transforms.py;
held against openpi's own code: tests/openpi/test_pi_transforms_openpi.py.)"""

import numpy as np

from bench.adapters import ActionChunker, resize_with_pad


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
