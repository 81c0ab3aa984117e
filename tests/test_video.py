"""Episode videos: frame layout, the MP4 writer on synthetic frames, and rendering that leaves observations alone."""

import dataclasses

import imageio_ffmpeg
import numpy as np
import pytest

from bench.envs import CpuWorkerEnvs
from bench.tasks import episodes_for, load_suite
from bench.video import EpisodeVideo, compose_frame


def test_compose_frame_puts_the_cameras_beside_the_third_person_view():
    view = np.full((448, 448, 3), 10, np.uint8)
    cameras = [np.full((224, 224, 3), 100, np.uint8), np.full((224, 224, 3), 200, np.uint8)]
    frame = compose_frame(view, cameras, ["step 3/100"])
    assert frame.shape == (448, 672, 3)
    assert frame[-1, 0, 0] == 10 and frame[100, -1, 0] == 100 and frame[-1, -1, 0] == 200
    assert frame[:30, :60].max() == 255  # the caption is drawn top left
    odd = compose_frame(np.zeros((101, 99, 3), np.uint8), [np.zeros((50, 50, 3), np.uint8)], [])
    assert odd.shape == (102, 200, 3)  # camera column scaled to 101 rows (101 wide); even for yuv420p


def test_episode_video_writes_h264_named_by_outcome(tmp_path):
    video = EpisodeVideo(tmp_path / "videos" / "T", index=3, fps=20)
    rng = np.random.default_rng(0)
    for _ in range(25):
        video.add(rng.integers(0, 255, (120, 160, 3), np.uint8))
    path = video.finish(success=True)
    assert path == tmp_path / "videos" / "T" / "ep3_success.mp4"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ep3_success.mp4"]  # no partial file left
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (160, 120) and meta["codec"] == "h264" and meta["fps"] == 20
    assert sum(1 for _ in reader) == 25

    aborted = EpisodeVideo(tmp_path / "videos" / "T", index=4, fps=20)
    aborted.add(np.zeros((120, 160, 3), np.uint8))
    aborted.abort()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ep3_success.mp4"]


@pytest.mark.timeout(600)
def test_rendering_does_not_change_what_the_policy_sees():
    """ManiSkill shows hidden objects (goals) for the third-person view; they must stay hidden from the cameras."""
    spec = dataclasses.replace(load_suite().tasks["PickCube-v1"], show_hidden=())  # keep the goal hidden
    (episode,) = episodes_for(spec.id, 0, 1)
    actions = np.tile(np.array([[0.5, 0.0, -0.5, 0.0, 0.0, 0.0, -1.0]], np.float32), (3, 1, 1))
    with CpuWorkerEnvs(1) as envs:
        envs.start_task(spec)
        runs = []
        for render in (False, True):
            observations = [envs.reset([episode.seed])]
            for action in actions:
                if render:
                    (view,) = envs.render([0])
                    assert view.shape == (448, 448, 3) and view.dtype == np.uint8
                observations.append(envs.step(action).obs)
            runs.append(observations)
    for plain, rendered in zip(*runs):
        for key in plain:
            np.testing.assert_array_equal(plain[key], rendered[key], err_msg=key)
