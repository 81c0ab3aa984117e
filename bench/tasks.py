"""The task suite: declarative TOML specs in `tasks/`, resolved into typed `TaskSpec`s, and pinned episodes."""

from __future__ import annotations

import hashlib
import json
import tomllib
import zlib
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from bench.errors import BenchError, unknown_name
from bench.variants import VARIANT_MARK, VARIANTS_FILE, Perturbation, base_id, parse_perturbation

DEFAULT_TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
SUITE_FILE = "suite.toml"


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines how a ManiSkill task is run and scored."""

    id: str
    instruction: str
    max_steps: int
    robot: str
    control_mode: str
    control_freq: int
    sim_freq: int
    cameras: tuple[str, ...]
    image_size: tuple[int, int]
    reward_mode: str
    show_hidden: tuple[str, ...]
    hidden_links: tuple[str, ...] = ()
    """Robot links whose visual is not drawn, by any camera: the wrist camera's RealSense D415 housing is 425,160
    of the scene's 582,216 triangles, seen by no policy camera but a few base-camera pixels, and cost most of every
    render."""
    gpu_pinnable: bool = field(default=True, metadata={"result": False})
    """False when the task draws part of its initial state at scene build time (PegInsertionSide's peg and hole
    sizes), which GPU physics cannot pin per episode: the task then runs on CPU workers. Not part of the contract:
    the backend each task ran on is."""
    variant: str = ""
    """A robustness variant's name (`tasks/robustness.toml`); "" for the nominal task."""
    perturbation: Perturbation = Perturbation()

    @property
    def base_id(self) -> str:
        """The ManiSkill task this runs (the nominal task's id)."""
        return base_id(self.id)


def result_view(spec: TaskSpec) -> dict:
    """The spec's result fields as the contract and the suite fingerprint hold them; a nominal task's holds no
    variant keys, so results written before variants existed still compare equal."""
    view = {k: v for k, v in asdict(spec).items() if k in result_fields()}
    if not spec.variant:
        view.pop("variant"), view.pop("perturbation")
    return view


def result_fields() -> set[str]:
    """Spec fields that can change a result: they enter the evaluation contract and the suite fingerprint."""
    return {f.name for f in fields(TaskSpec) if f.metadata.get("result", True)} - {"id"}


@dataclass(frozen=True)
class Episode:
    """One pinned episode: its initial state depends only on (run seed, task, index)."""

    task: str
    index: int
    seed: int


def episode_seed(run_seed: int, task_id: str, index: int) -> int:
    """Seed for episode `index` of `task_id`, independent of batch size, backend and order; a robustness variant's
    episodes are its base task's (its nominal twins start from the same state)."""
    entropy = [run_seed, zlib.crc32(base_id(task_id).encode()), index]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0] >> 1)


def episodes_for(task_id: str, run_seed: int, count: int, start: int = 0) -> list[Episode]:
    return [Episode(task_id, i, episode_seed(run_seed, task_id, i)) for i in range(start, start + count)]


@dataclass(frozen=True)
class TaskSuite:
    version: str
    tasks: dict[str, TaskSpec]
    suites: dict[str, tuple[str, ...]]
    suite_episodes: dict[str, int]  # episodes per task a suite asks for (e.g. smoke), when it says

    def resolve(self, selector: str) -> list[TaskSpec]:
        """`all`, another suite name, or a comma-separated list of task ids (and suite names)."""
        chosen: list[str] = []
        for name in (part.strip() for part in selector.split(",")):
            if not name:
                continue
            if name in self.suites:
                chosen.extend(self.suites[name])
            elif name in self.tasks:
                chosen.append(name)
            else:
                raise unknown_name("task", name, [*self.tasks, *self.suites], hint=" (see `bench tasks`)")
        if not chosen:
            raise BenchError("no tasks selected: pass --tasks all, a suite name or task ids such as PickCube-v1")
        return [self.tasks[t] for t in dict.fromkeys(chosen)]

    def fingerprint(self, tasks: list[TaskSpec]) -> str:
        """Hash of the resolved specs, so an edited task file without a version bump is still detectable."""
        blob = json.dumps([{"id": t.id, **result_view(t)} for t in tasks], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"{path}: malformed TOML: {e}; fix the file and run again") from e
    except OSError as e:
        raise BenchError(f"cannot read {path}: {e.strerror}") from e


def _spec(task_id: str, raw: dict, path: Path) -> TaskSpec:
    names = {f.name for f in fields(TaskSpec)} - {"id", "variant", "perturbation"}  # variants: robustness.toml
    unknown = set(raw) - names
    missing = {f.name for f in fields(TaskSpec) if f.default is MISSING} - {"id"} - set(raw)
    if unknown or missing:
        problem = f"unknown keys {sorted(unknown)}" if unknown else f"missing keys {sorted(missing)}"
        raise BenchError(f"{path}: {problem}; valid keys: {', '.join(sorted(names))}")
    tuples = {k: tuple(v) for k, v in raw.items() if isinstance(v, list)}
    spec = TaskSpec(id=task_id, **{**raw, **tuples})
    if spec.max_steps <= 0 or spec.control_freq <= 0 or spec.sim_freq % spec.control_freq:
        raise BenchError(f"{path}: max_steps and control_freq must be positive, sim_freq a multiple of control_freq")
    return spec


def load_suite(directory: Path = DEFAULT_TASKS_DIR) -> TaskSuite:
    """Reads `suite.toml` (suites, shared defaults) and one `<TaskId>.toml` per task."""
    suite_path = directory / SUITE_FILE
    if not suite_path.is_file():
        raise BenchError(f"no {SUITE_FILE} in {directory}: point --tasks-dir at a folder holding the task suite")
    raw = _read_toml(suite_path)
    defaults = raw.get("defaults", {})
    tasks = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name not in (SUITE_FILE, VARIANTS_FILE):
            tasks[path.stem] = _spec(path.stem, {**defaults, **_read_toml(path)}, path)
    suites, suite_episodes = {}, {}
    for name, entry in raw.get("suites", {}).items():  # a list of ids, or a table {tasks = [...], episodes = N}
        if isinstance(entry, dict):
            if set(entry) - {"tasks", "episodes"} or "tasks" not in entry:
                raise BenchError(f"{suite_path}: suite '{name}' must be a list of task ids or a table with keys "
                                 f"tasks and (optional) episodes, got keys {sorted(entry)}")
            if "episodes" in entry:
                if not isinstance(entry["episodes"], int) or entry["episodes"] <= 0:
                    raise BenchError(f"{suite_path}: suite '{name}': episodes must be a positive integer")
                suite_episodes[name] = entry["episodes"]
            entry = entry["tasks"]
        suites[name] = tuple(entry)
    variants_path = directory / VARIANTS_FILE
    if variants_path.is_file():
        variant_tasks, variant_suites = _variants(tasks, _read_toml(variants_path), variants_path)
        tasks.update(variant_tasks)
        for name, ids in variant_suites.items():
            if name in suites:
                raise BenchError(f"{variants_path}: suite '{name}' is also defined in {suite_path}: rename one")
            suites[name] = ids
    for name, ids in suites.items():
        for task_id in ids:
            if task_id not in tasks:
                raise unknown_name("task", task_id, tasks, hint=f" (listed in suite '{name}' of {suite_path})")
    return TaskSuite(version=str(raw["version"]), tasks=tasks, suites=suites, suite_episodes=suite_episodes)


def _variants(tasks: dict[str, TaskSpec], raw: dict, path: Path) -> tuple[dict[str, TaskSpec], dict[str, tuple]]:
    """`robustness.toml` -> a spec `<TaskId>@<variant>` per base task and variant (a variant's own `tasks` list
    narrows it to some of the file's tasks), and the suites: `robustness`
    (each base task, then its variants), `robustness-<axis>` (each base task and that axis's variants), and the
    file's own `[subsets]` of variant ids."""
    unknown = set(raw) - {"tasks", "variants", "paraphrases", "layouts", "recolorable", "subsets"}
    if unknown:
        raise BenchError(f"{path}: unknown keys {sorted(unknown)}; valid keys: layouts, paraphrases, recolorable, "
                         "subsets, tasks, variants")
    base = list(raw.get("tasks", []))
    for task_id in base:
        if task_id not in tasks:
            raise unknown_name("task", task_id, tasks, hint=f" (listed in {path})")
    variants, applies = {}, {}
    for name, entry in raw.get("variants", {}).items():
        only = entry.get("tasks", base) if isinstance(entry, dict) else base
        unknown = set(only) - set(base)
        if unknown:
            raise BenchError(f"{path}: variant '{name}': tasks {sorted(unknown)} are not in the file's tasks {base}")
        variants[name] = parse_perturbation(name, {k: v for k, v in entry.items() if k != "tasks"}, path)
        applies[name] = set(only)
    paraphrases = {task: tuple(texts) for task, texts in raw.get("paraphrases", {}).items()}
    specs: dict[str, TaskSpec] = {}
    for task_id in base:
        for name, perturbation in variants.items():
            if task_id not in applies[name]:
                continue
            if perturbation.axis == "language":
                if not paraphrases.get(task_id):
                    raise BenchError(f"{path}: variant '{name}' paraphrases the instruction, but [paraphrases] has "
                                     f"no list for {task_id}: add one")
                perturbation = replace(perturbation, instructions=paraphrases[task_id])
            if perturbation.spawn_scale != 1.0:
                layout = raw.get("layouts", {}).get(task_id)
                if not layout or not layout.get("actors") or len(layout.get("center", ())) != 2:
                    raise BenchError(f"{path}: variant '{name}' widens spawn ranges, but [layouts] has no "
                                     f"{{actors = [...], center = [x, y]}} for {task_id}: add one")
                perturbation = replace(perturbation, layout_actors=tuple(layout["actors"]),
                                       spawn_center=tuple(layout["center"]))
            if perturbation.object_color is not None:
                if not raw.get("recolorable", {}).get(task_id):
                    raise BenchError(f"{path}: variant '{name}' recolours objects, but [recolorable] names none for "
                                     f"{task_id}: add them, or leave {task_id} out of the variant's tasks")
                perturbation = replace(perturbation, recolor_actors=tuple(raw["recolorable"][task_id]))
            variant_id = f"{task_id}{VARIANT_MARK}{name}"
            specs[variant_id] = replace(tasks[task_id], id=variant_id, variant=name, perturbation=perturbation)
    def suite_of(names: list[str]) -> tuple[str, ...]:
        return tuple(i for t in base for i in (t, *(f"{t}{VARIANT_MARK}{n}" for n in names if t in applies[n])))

    suites = {"robustness": suite_of(list(variants))}
    for axis in dict.fromkeys(p.axis for p in variants.values()):
        suites[f"robustness-{axis.replace('_', '-')}"] = suite_of([n for n, p in variants.items() if p.axis == axis])
    for name, ids in raw.get("subsets", {}).items():
        suites[name] = tuple(ids)
    return specs, suites
