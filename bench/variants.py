"""Robustness variants: a task with one perturbation (camera, lighting, appearance, distractors, sensor, language, initial
state), declared in
`tasks/robustness.toml` and named `<TaskId>@<variant>` (e.g. `PickCube-v1@camera-small`).

A variant's episodes are its base task's (same seeds, `tasks.episode_seed`), so a perturbed episode and its nominal
twin start from the same state, except on the initial-state axis, which changes the start by design (pair those by
episode index). What a variant draws per episode (the sensor noise, a paraphrase) comes from its own stream,
`axis_rng(seed, axis, ...)`, never from the one the task's initial state is drawn from.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np

VARIANT_MARK = "@"
VARIANTS_FILE = "robustness.toml"
AXES = ("camera", "lighting", "appearance", "distractors", "sensor", "language", "initial_state")
DISTRACTOR_SHAPES = ("box", "sphere")


@dataclass(frozen=True)
class Distractor:
    """A small loose object that no task uses, put on the table at the start of every episode."""

    shape: str
    """"box" or "sphere"."""
    xy: tuple[float, float]
    """Metres on the table, in the task's frame (the robot's base stands at x = -0.615)."""
    size: float
    """Half the edge of a box, the radius of a sphere, in metres."""
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Perturbation:
    """One level of one axis. Every value defaults to "unchanged". Fixed offsets (camera, lighting) are the same in
    every episode; sensor noise is drawn per step and a paraphrase per episode, from the axis's own stream."""

    axis: str = ""
    version: int = 0
    """Bumped with any change to the variant's values; it enters the contract, so results of two versions never
    compare as equal."""
    # camera (the base camera; the wrist camera moves with the hand and is left alone)
    camera_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Metres, added to the camera's position in the world frame; its orientation is kept."""
    camera_turn: tuple[float, float] = (0.0, 0.0)
    """Degrees of (pitch, yaw) about the camera's own axes, after the shift."""
    camera_fov_scale: float = 1.0
    # lighting (ManiSkill's default: ambient 0.3 grey, two white directional lights)
    light_scale: float = 1.0
    """Multiplies every light's intensity, ambient included."""
    light_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Multiplies every light's RGB colour."""
    light_direction: tuple[float, float, float] | None = None
    """Where the key light (the first directional light, ManiSkill's (1, 1, -1)) shines to; None keeps it."""
    # appearance: the colour texture of the table top and the floor replaced by a colour (their materials' other
    # maps stay: the wood grain still shows)
    table_color: tuple[float, float, float] | None = None
    """RGB in [0, 1] for the table top; None keeps ManiSkill's wood colour."""
    floor_color: tuple[float, float, float] | None = None
    """RGB in [0, 1] for the floor; None keeps ManiSkill's."""
    table_checker: int = 0
    """A checkerboard of this many cells per side replaces the table top's colour texture (0: none); its colours
    are `table_checker_colors`."""
    table_checker_colors: tuple[tuple[float, float, float], tuple[float, float, float]] = ((0.9, 0.9, 0.85),
                                                                                           (0.2, 0.25, 0.3))
    object_color: tuple[float, float, float] | None = None
    """RGB in [0, 1] for the task's objects whose colour its instruction does not name (`recolor_actors`)."""
    recolor_actors: tuple[str, ...] = ()
    """Set per task from robustness.toml's [recolorable]: the task env's attributes naming those objects."""
    # distractors: fixed places, the same in every episode, put back at each episode's start
    distractors: tuple[Distractor, ...] = ()
    # sensor: applied to every rendered camera image after rendering, before anything reads it
    image_noise_std: float = 0.0
    """Gaussian noise, in uint8 levels."""
    image_blur_sigma: float = 0.0
    """Gaussian blur, in pixels."""
    jpeg_quality: int = 0
    """JPEG compression at this quality (1-95); 0 leaves images alone."""
    # language
    instructions: tuple[str, ...] = ()
    """Paraphrases of the task's instruction; each episode gets one, drawn from the language stream."""
    # initial state (changes where an episode starts: its twin is paired by episode index, not by state)
    robot_init_qpos_noise: float | None = None
    """ManiSkill's `robot_init_qpos_noise` (its default: 0.02 rad)."""
    spawn_scale: float = 1.0
    """Wider spawn ranges: after the task places its objects, the whole layout (`layout_actors`, moved together, so
    the objects keep their places relative to each other) moves so that its first actor's offset from the centre of
    its spawn region is `spawn_scale` times what the task drew. The draw itself is the task's own, unchanged."""
    layout_actors: tuple[str, ...] = ()
    """Set per task from robustness.toml's [layouts]: the task env's attributes naming its layout's actors."""
    spawn_center: tuple[float, float] = (0.0, 0.0)
    """Set per task from [layouts]: the centre of the first layout actor's spawn region in the task's ManiSkill file."""

    @property
    def scene(self) -> bool:
        """Whether the simulator's scene is built or initialised differently (camera, lighting, appearance,
        distractors, spawn ranges): a subclass of the task."""
        return (self.camera_shift != (0.0, 0.0, 0.0) or self.camera_turn != (0.0, 0.0) or self.camera_fov_scale != 1.0
                or self.light_scale != 1.0 or self.light_color != (1.0, 1.0, 1.0) or self.light_direction is not None
                or self.table_color is not None or self.table_checker > 0 or self.floor_color is not None
                or self.object_color is not None or bool(self.distractors) or self.spawn_scale != 1.0)

    @property
    def sensor(self) -> bool:
        return bool(self.image_noise_std or self.image_blur_sigma or self.jpeg_quality)


def base_id(task_id: str) -> str:
    """`PickCube-v1@camera-small` -> `PickCube-v1`; a nominal id is its own base."""
    return task_id.partition(VARIANT_MARK)[0]


def axis_rng(seed: int, axis: str, *more: int) -> np.random.Generator:
    """The random stream of one axis in one episode (and, with `more`, one step): independent of the stream ManiSkill
    draws the initial state from, which the episode seed alone feeds."""
    return np.random.default_rng([int(seed), zlib.crc32(axis.encode()), *map(int, more)])


def instruction_for(task, seed: int) -> str:
    """The instruction an episode is given: the task's, or on the language axis one of its paraphrases, drawn by the
    episode's seed from the language stream."""
    paraphrases = task.perturbation.instructions
    if not paraphrases:
        return task.instruction
    return paraphrases[int(axis_rng(seed, "language").integers(len(paraphrases)))]


def perturb_image(image: np.ndarray, perturbation: Perturbation, seed: int, step: int, camera: int) -> np.ndarray:
    """uint8 [H, W, 3] of camera number `camera` at `step` of the episode with `seed` -> the image as the perturbed
    sensor delivers it: blur, then noise, then JPEG (a camera's optics, then its sensor, then its encoder)."""
    if not perturbation.sensor:
        return image
    out = image
    if perturbation.image_blur_sigma:
        import cv2

        out = cv2.GaussianBlur(out, (0, 0), perturbation.image_blur_sigma)
    if perturbation.image_noise_std:
        noise = axis_rng(seed, "sensor", step, camera).normal(0.0, perturbation.image_noise_std, out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if perturbation.jpeg_quality:
        import cv2

        ok, encoded = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, perturbation.jpeg_quality])
        out = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)


def parse_perturbation(name: str, raw: dict, path) -> Perturbation:
    """A `[variants.<name>]` table -> Perturbation; one line naming the fix for anything wrong."""
    from bench.errors import BenchError

    known = {f.name for f in fields(Perturbation)}
    unknown = set(raw) - known
    if unknown:
        raise BenchError(f"{path}: variant '{name}': unknown keys {sorted(unknown)}; valid keys: {', '.join(sorted(known))}")
    if raw.get("axis") not in AXES:
        raise BenchError(f"{path}: variant '{name}': axis must be one of {', '.join(AXES)}, got {raw.get('axis')!r}")
    if not isinstance(raw.get("version"), int) or raw["version"] <= 0:
        raise BenchError(f"{path}: variant '{name}': version must be a positive integer (bump it with any change)")
    if {"layout_actors", "spawn_center", "recolor_actors"} & set(raw):
        raise BenchError(f"{path}: variant '{name}': layout_actors, spawn_center and recolor_actors are per task: set "
                         "them in [layouts] and [recolorable]")
    values = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
              for k, v in raw.items() if k != "distractors"}
    values["distractors"] = tuple(_distractor(name, i, d, path) for i, d in enumerate(raw.get("distractors", [])))
    perturbation = Perturbation(**values)
    colors = perturbation.table_checker_colors
    if not (isinstance(perturbation.table_checker, int) and perturbation.table_checker >= 0 and len(colors) == 2
            and all(len(c) == 3 for c in colors)):
        raise BenchError(f"{path}: variant '{name}': table_checker takes a cell count (0: off) and "
                         "table_checker_colors two RGB colours, e.g. [[0.9, 0.9, 0.85], [0.2, 0.25, 0.3]]")
    if not 0 <= perturbation.jpeg_quality <= 95:
        raise BenchError(f"{path}: variant '{name}': jpeg_quality must be 1-95 (0: off)")
    return perturbation


def _distractor(variant: str, index: int, raw, path):
    from bench.errors import BenchError

    where = f"{path}: variant '{variant}': distractors[{index}]"
    known = {f.name for f in fields(Distractor)}
    if not isinstance(raw, dict) or set(raw) != known:
        raise BenchError(f"{where}: give exactly {', '.join(sorted(known))} (e.g. {{shape = \"box\", xy = [0.2, -0.3], "
                         f"size = 0.02, color = [0.1, 0.5, 0.9]}})")
    if raw["shape"] not in DISTRACTOR_SHAPES:
        raise BenchError(f"{where}: shape must be one of {', '.join(DISTRACTOR_SHAPES)}, got {raw['shape']!r}")
    if not (isinstance(raw["xy"], list) and len(raw["xy"]) == 2 and isinstance(raw["color"], list)
            and len(raw["color"]) == 3 and isinstance(raw["size"], (int, float)) and 0 < raw["size"] <= 0.1):
        raise BenchError(f"{where}: xy takes 2 numbers, color 3 (RGB in [0, 1]), size one in (0, 0.1] metres")
    return Distractor(raw["shape"], tuple(raw["xy"]), float(raw["size"]), tuple(raw["color"]))
