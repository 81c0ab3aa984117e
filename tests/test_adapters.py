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


def test_axis_angle_from_maniskill_quaternions_on_known_rotations():
    """ManiSkill quaternions are w, x, y, z: against hand-worked rotations and scipy (scalar_first)."""
    from scipy.spatial.transform import Rotation

    from bench.adapters import quat_wxyz_to_axis_angle

    s = np.sqrt(0.5)
    known = {(1, 0, 0, 0): (0, 0, 0),  # identity
             (s, s, 0, 0): (np.pi / 2, 0, 0),  # 90 degrees about x
             (s, 0, 0, -s): (0, 0, -np.pi / 2),  # -90 degrees about z
             (0, 1, 0, 0): (np.pi, 0, 0),  # 180 degrees about x: a Panda gripper pointing down
             (-s, -s, 0, 0): (np.pi / 2, 0, 0)}  # the same rotation as (s, s, 0, 0): q and -q agree
    for quat, rotvec in known.items():
        np.testing.assert_allclose(quat_wxyz_to_axis_angle(np.array([quat])), [rotvec], atol=1e-12, err_msg=quat)
    quats = Rotation.random(64, random_state=0).as_quat(scalar_first=True)
    ours = quat_wxyz_to_axis_angle(quats)
    np.testing.assert_allclose(ours, Rotation.from_quat(quats, scalar_first=True).as_rotvec(), atol=1e-12)
    np.testing.assert_allclose(Rotation.from_rotvec(ours).as_matrix(),
                               Rotation.from_quat(quats[:, [1, 2, 3, 0]]).as_matrix(), atol=1e-12)  # scipy's xyzw
    assert (np.linalg.norm(ours, axis=-1) <= np.pi + 1e-12).all()
    # LIBERO's conversion (robosuite's quat2axisangle on x, y, z, w), where w >= 0: the same vectors
    w = quats[:, 0:1] * np.sign(quats[:, 0:1])
    libero = quats[:, 1:] * np.sign(quats[:, 0:1]) * 2 * np.arccos(w) / np.sqrt(1 - w * w)
    np.testing.assert_allclose(ours, libero, atol=1e-12)


def test_state_layouts_name_their_rotation_convention():
    from scipy.spatial.transform import Rotation

    from bench.adapters import STATE_LAYOUTS, STATE_WIDTHS

    quat = Rotation.from_euler("x", 180, degrees=True).as_quat(scalar_first=True)  # w, x, y, z
    obs = {"extra/tcp_pose": np.array([[0.1, 0.2, 0.3, *quat]], np.float32),
           "agent/qpos": np.arange(9, dtype=np.float32)[None] / 100}
    layouts = {name: pick(obs) for name, pick in STATE_LAYOUTS.items()}
    assert {name: state.shape[1] for name, state in layouts.items()} == STATE_WIDTHS
    np.testing.assert_array_equal(layouts["tcp_pose_gripper"], layouts["tcp_pos_quat_gripper"])  # the old name
    np.testing.assert_allclose(layouts["tcp_pos_quat_gripper"][0], [0.1, 0.2, 0.3, *quat, 0.07], rtol=1e-6)
    np.testing.assert_allclose(layouts["tcp_pos_axisangle_fingers"][0], [0.1, 0.2, 0.3, np.pi, 0, 0, 0.07, 0.08],
                               atol=1e-6)
    assert layouts["tcp_pos_axisangle_fingers"].dtype == np.float32
