"""Policies: a batched interface, a plugin registry (entry points group `bench.policies`) and TOML presets.

A policy sees observations for the env slots that need a new action chunk and returns one chunk per slot.
Presets in `policies/` name a plugin and its parameters; users copy and edit them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tomllib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import numpy as np

from bench.errors import BenchError, unknown_name
from bench.tasks import Episode, TaskSpec
from bench.variants import instruction_for

ENTRY_POINT_GROUP = "bench.policies"
DEFAULT_PRESETS_DIR = Path(__file__).resolve().parents[2] / "policies"

Obs = dict[str, np.ndarray]


@dataclass(frozen=True)
class EpisodeContext:
    """What a policy learns about an episode when it starts in a slot."""

    task: TaskSpec
    episode: Episode
    action_low: np.ndarray
    action_high: np.ndarray

    @property
    def instruction(self) -> str:
        """The instruction this episode is given (a paraphrase on the language axis of a robustness variant)."""
        return instruction_for(self.task, self.episode.seed)


class Policy(ABC):
    """Batched policy: `act` maps n observations to n action chunks [n, horizon, action_dim]."""

    name: str = "policy"
    overlap: bool = False
    """True when `act` mostly waits on a GPU or a server: the runner then simulates one half of the env slots
    while the policy works for the other half. Policies that compute on the driver's CPU leave it False."""
    reads_cameras: bool = True
    """False for a policy that reads only the state keys: its environments then never render their cameras (filmed
    slots and recordings excepted), which is most of a step's cost. A camera-reading policy has them rendered only
    on the steps it is asked for a chunk."""

    @abstractmethod
    def describe(self) -> dict:
        """JSON-able identity for the manifest: name, version or checkpoint fingerprint, settings."""

    @classmethod
    def preflight(cls, **params) -> None:
        """Cheap checks of a preset's [params] (names, files that must exist), run before any env worker starts or
        model is built, so that a bad setting fails before anything looks like a run. Raise BenchError."""

    def check_task(self, task: TaskSpec) -> None:
        """Raise BenchError if this policy cannot run `task`; called for every task before any episode."""

    @abstractmethod
    def reset(self, slot: int, context: EpisodeContext) -> None:
        """Called when a new episode starts in `slot`."""

    @abstractmethod
    def act(self, obs: Obs, slots: np.ndarray) -> np.ndarray:
        """obs rows correspond to `slots`; returns float actions [len(slots), horizon, action_dim]."""

    def snapshot(self, slot: int) -> object | None:
        """A copy of the slot's per-episode state (random generators, phase counters); `()` if there is none.

        When a batched `act` raises, the runner restores every slot of the batch and asks each again alone, so the
        episodes that did not fail act exactly as in an uninterrupted run. None (the default, for plugins that do
        not say) means it cannot: the slots of a failed batch then end as errors instead of running on with
        state the failed call may have changed."""
        return None

    def restore(self, slot: int, state: object) -> None:
        """Puts back what `snapshot(slot)` returned."""
        raise NotImplementedError(f"policy '{self.name}' returns snapshots but cannot restore them")


@dataclass(frozen=True)
class PolicyPreset:
    name: str
    plugin: str
    description: str = ""
    params: dict = field(default_factory=dict)
    source: str = ""  # the preset file, or "entry point" for a bare plugin name
    dataset: dict = field(default_factory=dict)
    """[dataset.<keys>] tables: how this policy's inputs are stored in a training dataset (`bench record`,
    bench.datasets.layout). Not part of the fingerprint: it changes no evaluation."""

    def with_overrides(self, **params) -> "PolicyPreset":
        """The preset with command-line values (those not None) replacing its [params]."""
        given = {k: v for k, v in params.items() if v is not None}
        return replace(self, params={**self.params, **given}) if given else self

    def fingerprint(self) -> str:
        blob = json.dumps({"plugin": self.plugin, "params": self.params}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def plugins() -> dict[str, EntryPoint]:
    """Installed policy plugins by name (entry points, loaded lazily)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_preset(path: Path) -> PolicyPreset:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"{path}: malformed TOML: {e}; fix the preset and run again") from e
    except OSError as e:
        raise BenchError(f"cannot read policy preset {path}: {e.strerror}") from e
    unknown = set(raw) - {"plugin", "description", "params", "dataset"}
    if "plugin" not in raw or unknown:
        raise BenchError(f"{path}: a preset needs `plugin = \"<name>\"` and may have `description`, [params] and "
                         "[dataset.<keys>]" + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
    return PolicyPreset(path.stem, raw["plugin"], raw.get("description", ""), raw.get("params", {}), str(path),
                        raw.get("dataset", {}))


def presets(directory: Path = DEFAULT_PRESETS_DIR) -> dict[str, PolicyPreset]:
    return {p.stem: _load_preset(p) for p in sorted(directory.glob("*.toml"))}


def resolve_preset(name: str, directory: Path = DEFAULT_PRESETS_DIR) -> PolicyPreset:
    """A preset name in `policies/`, a path to a preset file, or a bare plugin name."""
    if name.endswith(".toml"):
        return _load_preset(Path(name))
    known_presets = presets(directory)
    if name in known_presets:
        return known_presets[name]
    if name in plugins():
        return PolicyPreset(name, name, source="entry point")
    raise unknown_name("policy", name, {*known_presets, *plugins()}, hint=" (see `bench policies`)")


def _plugin(preset: PolicyPreset) -> EntryPoint:
    """An installed plugin by name, or "package.module:Class" (an entry point's value) for a class that is
    importable but not installed as a plugin, e.g. while developing it."""
    if ":" in preset.plugin:
        return EntryPoint(preset.name, preset.plugin, ENTRY_POINT_GROUP)
    available = plugins()
    if preset.plugin not in available:
        raise unknown_name("policy plugin", preset.plugin, available, hint=f" (named by {preset.source})")
    return available[preset.plugin]


def _policy_class(preset: PolicyPreset) -> type[Policy]:
    try:
        return _plugin(preset).load()
    except (ImportError, AttributeError) as e:
        raise BenchError(f"cannot load policy plugin {preset.plugin} (named by {preset.source}): {e}") from None


def preflight_policy(preset: PolicyPreset) -> None:
    """The plugin loads, takes the preset's [params] and finds its files; nothing is built."""
    cls = _policy_class(preset)
    try:
        inspect.signature(cls).bind(num_slots=1, seed=0, **preset.params)
    except TypeError as e:
        raise BenchError(f"policy '{preset.name}': bad [params] in {preset.source}: {e}") from None
    cls.preflight(**preset.params)


def build_policy(preset: PolicyPreset, num_slots: int, seed: int) -> Policy:
    cls = _policy_class(preset)
    try:
        return cls(num_slots=num_slots, seed=seed, **preset.params)
    except TypeError as e:
        raise BenchError(f"policy '{preset.name}': bad [params] in {preset.source}: {e}") from e
