"""Episode videos: the policy's cameras beside a third-person view, with the step and success drawn on.

The first K episodes (by index) of each task are recorded. Each video is streamed to ffmpeg as the episode runs
(a 200-step episode would otherwise hold ~200 MB of frames) and renamed `ep<index>_<success|failure>.mp4` when
the episode ends; success is `success_once`, the leaderboard's metric. H.264 in yuv420p, so browsers play it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.tasks import Episode, TaskSpec

VIDEOS = "videos"  # folder in the run folder
FONT_SIZE = 18


def compose_frame(third_person: np.ndarray, cameras: Sequence[np.ndarray], caption: Sequence[str]) -> np.ndarray:
    """[third-person | policy cameras stacked], as tall as the third-person view, caption lines drawn top left.

    Width and height are rounded up to even numbers (black padding): yuv420p needs them even.
    """
    height = third_person.shape[0]
    column = np.concatenate(list(cameras), axis=0)
    if column.shape[0] != height:
        width = round(column.shape[1] * height / column.shape[0])
        column = np.asarray(Image.fromarray(column).resize((width, height), Image.Resampling.BILINEAR))
    frame = np.concatenate([third_person, column], axis=1)
    frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image, "RGBA")
    font = ImageFont.load_default(size=FONT_SIZE)
    y = 4
    for line in caption:
        box = draw.textbbox((6, y), line, font=font)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0, 160))
        draw.text((6, y), line, font=font, fill=(255, 255, 255))
        y = box[3] + 6
    return np.asarray(image)


class EpisodeVideo:
    """One episode's MP4, written frame by frame under a temporary name until the outcome is known."""

    def __init__(self, folder: Path, index: int, fps: int):
        self.folder = folder
        self.index = index
        self.fps = fps
        self.partial = folder / f".ep{index}.partial.mp4"
        self._writer = None

    def add(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            import imageio_ffmpeg  # only runs that record video need the ffmpeg binary it ships

            self._writer = imageio_ffmpeg.write_frames(
                str(self.partial), (frame.shape[1], frame.shape[0]), fps=self.fps, codec="libx264",
                pix_fmt_out="yuv420p", macro_block_size=1,
                output_params=["-movflags", "+faststart"])  # index first: browsers start playing at once
            self._writer.send(None)
        self._writer.send(np.ascontiguousarray(frame))

    def finish(self, success: bool) -> Path:
        self._writer.close()
        path = self.folder / f"ep{self.index}_{'success' if success else 'failure'}.mp4"
        self.partial.replace(path)
        return path

    def abort(self) -> None:
        """An interrupted episode leaves no video behind."""
        if self._writer is not None:
            self._writer.close()
        self.partial.unlink(missing_ok=True)


class WaveVideos:
    """Videos of the episodes of one wave that are recorded (index < keep); a context that cleans up on errors."""

    def __init__(self, run_dir: Path, task: TaskSpec, wave: Sequence[Episode], keep: int):
        self.run_dir = run_dir
        self.task = task
        self.slots = [slot for slot, episode in enumerate(wave) if episode.index < keep]
        folder = run_dir / VIDEOS / task.id
        self.videos = {slot: EpisodeVideo(folder, wave[slot].index, task.control_freq) for slot in self.slots}

    def capture(self, render: Callable[[list[int]], list[np.ndarray]], obs: dict[str, np.ndarray], step: int,
                success: np.ndarray, first_success: np.ndarray, among: Sequence[int] | None = None) -> None:
        """Adds a frame per recorded slot (of those in `among`, default all); `render(slots)` returns their
        third-person views; `obs`, `success` and `first_success` have a row per slot of the wave."""
        slots = [s for s in self.slots if among is None or s in among]
        if not slots:
            return
        for slot, view in zip(slots, render(slots)):
            if view is None:  # its env worker died: the episode will be run again (and filmed again)
                continue
            cameras = [obs[f"sensor_data/{camera}/rgb"][slot] for camera in self.task.cameras]
            if success[slot]:
                state = "success"
            elif first_success[slot] > 0:
                state = f"succeeded at step {first_success[slot]}"
            else:
                state = "no success yet"
            caption = [f"{self.task.id} episode {self.videos[slot].index}", f"step {step}/{self.task.max_steps}", state]
            self.videos[slot].add(compose_frame(view, cameras, caption))

    def finish(self, success_once: np.ndarray, drop: set[int] = frozenset()) -> dict[int, str]:
        """Closes the videos, discarding those of the `drop` slots; slot -> path relative to the run folder."""
        for slot in drop & set(self.slots):
            self.videos[slot].abort()
        return {slot: self.videos[slot].finish(bool(success_once[slot])).relative_to(self.run_dir).as_posix()
                for slot in self.slots if slot not in drop}

    def __enter__(self) -> WaveVideos:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for video in self.videos.values():
                video.abort()
