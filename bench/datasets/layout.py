"""Which dataset keys hold a Pi policy's inputs: a preset's [dataset.<keys>] table, resolved against its cameras.

One preset file says how a policy sees a task both in evaluation ([params]) and in its training data ([dataset]),
so what `bench record` writes is what `bench run` would feed that policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.adapters import STATE_LAYOUTS, STATE_WIDTHS
from bench.errors import BenchError
from bench.policies import PolicyPreset
from bench.policies.pi_types import DEFAULT_CAMERAS, IMAGE_KEYS, IMAGE_SIZE

FORMATS = ("v3.0", "v2.1")
KEYS = ("lerobot", "openpi")
DATA_KEYS = (*IMAGE_KEYS, "state", "actions")  # what a [dataset.<keys>] table maps to dataset keys


@dataclass(frozen=True)
class DatasetLayout:
    """A layout resolved for one recording: which cameras, state and action go under which dataset key."""

    preset: str  # the preset it comes from
    keys: str  # the [dataset.<keys>] table
    format: str  # "v3.0" or "v2.1"
    cameras: dict[str, str]  # Pi image key -> ManiSkill camera, present cameras only
    images: dict[str, str]  # Pi image key -> dataset key, same keys as `cameras`
    state: str
    actions: str
    state_layout: str
    action_dim: int
    image_size: int = IMAGE_SIZE

    @property
    def key_map(self) -> dict[str, str]:
        """Pi image key / "state" / "actions" -> dataset key (what bench.json records as `keys`)."""
        return {**self.images, "state": self.state, "actions": self.actions}

    @property
    def state_dim(self) -> int:
        return STATE_WIDTHS[self.state_layout]


def resolve_layout(preset: PolicyPreset, keys: str, fmt: str | None) -> DatasetLayout:
    """The layout of `preset` under its [dataset.<keys>] table; `fmt` overrides the table's `format`."""
    if not preset.dataset:
        raise BenchError(f"preset '{preset.name}' has no [dataset.<keys>] tables, so it does not say how its inputs "
                         "are stored: pass --layout pi0 or --layout pi05 (or a preset file with [dataset] tables)")
    if keys not in preset.dataset:
        raise BenchError(f"unknown --keys '{keys}': {preset.source} has [dataset.<keys>] tables for "
                         f"{', '.join(sorted(preset.dataset))}")
    table = dict(preset.dataset[keys])
    fmt = fmt or table.pop("format", "v3.0")
    table.pop("format", None)
    if fmt not in FORMATS:
        raise BenchError(f"unknown dataset format '{fmt}': one of {', '.join(FORMATS)} (--format, or `format` in "
                         f"[dataset.{keys}] of {preset.source})")
    unknown = set(table) - set(DATA_KEYS)
    if unknown or "state" not in table or "actions" not in table:
        raise BenchError(f"[dataset.{keys}] of {preset.source}: keys are {', '.join(DATA_KEYS)} and format; "
                         f"state and actions are required" + (f"; unknown {sorted(unknown)}" if unknown else ""))
    params = preset.params
    state_layout = params.get("state_layout", "qpos8")
    if state_layout not in STATE_LAYOUTS:
        raise BenchError(f"{preset.source}: unknown state_layout '{state_layout}': one of {', '.join(STATE_LAYOUTS)}")
    cameras = {k: v for k, v in {**DEFAULT_CAMERAS, **params.get("cameras", {})}.items() if v}
    missing = [k for k in cameras if k not in table]
    if missing:
        raise BenchError(f"[dataset.{keys}] of {preset.source} names no dataset key for the cameras {missing}: add "
                         f"e.g. {missing[0]} = \"observation.images.{missing[0]}\"")
    values = [table[k] for k in (*cameras, "state", "actions")]
    if len(set(values)) != len(values) or any("/" in v or not v for v in values):
        raise BenchError(f"[dataset.{keys}] of {preset.source}: dataset keys must be distinct, non-empty and "
                         f"without '/', got {values}")
    return DatasetLayout(preset.name, keys, fmt, cameras, {k: table[k] for k in cameras}, table["state"],
                         table["actions"], state_layout, int(params.get("action_dim", 7)))
