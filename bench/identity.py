"""Which policy a run evaluated, and the name tables give it: one definition for the leaderboard, the report, its
comparisons and `bench compare`.

Records and presets say only the preset's name (`pi05`), but two runs of `pi05` with other checkpoints or
params are two policies: a table keyed on the preset name would show one and hide the other. A policy's
identity is therefore its `--label` (when given), its preset name and a fingerprint of what it computes with:

- a policy with a checkpoint (`describe()` reports `checkpoint_fingerprint`, a hash of the weights): the
  preset's plugin and params with the checkpoint *path* replaced by the weights' fingerprint, so the same
  weights under two paths are one policy and weights retrained in place are two;
- any other policy: the preset fingerprint (plugin and params) recorded in the manifest.

Names, for a set of identities shown together (`policy_names`):

- `--label NAME`: NAME;
- a checkpoint: `<preset>@<checkpoint folder>#<weights fingerprint[:6]>` (an openpi step folder such as
  `.../pi05_maniskill/29999` shows as `pi05_maniskill/29999`);
- otherwise the preset name;
- two identities that would still share a name (one label on two policies, one preset with two sets of params)
  both get `#<identity fingerprint[:6]>` appended: rows are never merged. One label naming several policies is
  a mistake worth a warning (`label_warnings`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePath

SHORT = 6  # fingerprint characters in names


@dataclass(frozen=True)
class PolicyIdentity:
    """Equal identities are one policy: one leaderboard row."""

    preset: str
    fingerprint: str
    """What the policy computes with (see the module doc); "" for manifests that predate fingerprints."""
    label: str | None = None
    checkpoint_fingerprint: str | None = None
    checkpoint: str | None = field(default=None, compare=False)
    """The checkpoint folder, as shown in names; not part of the identity (one checkpoint may live in two places)."""

    @property
    def base_name(self) -> str:
        """The name before telling apart identities that share it."""
        if self.label:
            return self.label
        if self.checkpoint_fingerprint:
            return f"{self.preset}@{self.checkpoint or '?'}#{self.checkpoint_fingerprint[:SHORT]}"
        return self.preset

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:SHORT] or "?"


def policy_identity(manifest: dict) -> PolicyIdentity:
    """The identity of the policy a run's manifest records (tolerates manifests of older bench versions)."""
    policy = manifest.get("policy") or {}
    describe = policy.get("describe") or {}
    params = policy.get("params") or {}
    preset = policy.get("name") or "?"
    weights = describe.get("checkpoint_fingerprint")
    if weights:
        blob = {"plugin": policy.get("plugin"), "params": {k: v for k, v in params.items() if k != "checkpoint"},
                "checkpoint_fingerprint": weights}
        fingerprint = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]
    else:
        fingerprint = policy.get("fingerprint") or ""
    path = params.get("checkpoint") or describe.get("checkpoint")
    return PolicyIdentity(preset, fingerprint, policy.get("label") or None, weights or None,
                          _checkpoint_name(str(path)) if path else None)


def _checkpoint_name(path: str) -> str:
    parts = PurePath(path).parts
    if len(parts) > 1 and parts[-1].isdigit():  # a training step folder: its run's name says more
        return "/".join(parts[-2:])
    return parts[-1] if parts else path


def policy_names(identities: Iterable[PolicyIdentity]) -> dict[PolicyIdentity, str]:
    """A distinct name for each distinct identity (see the module doc). For an identity that appears with
    several checkpoint folders, the first one given names it: pass identities newest run first."""
    first = list(dict.fromkeys(identities))
    sharing: dict[str, int] = {}
    for identity in first:
        sharing[identity.base_name] = sharing.get(identity.base_name, 0) + 1
    return {identity: identity.base_name + (f"#{identity.short_fingerprint}" if sharing[identity.base_name] > 1
                                            else "") for identity in first}


def label_warnings(identities: Iterable[PolicyIdentity]) -> list[str]:
    """One line per `--label` given to more than one policy: their rows are kept apart, the user should rename."""
    identities = list(dict.fromkeys(identities))
    by_label: dict[str, list[PolicyIdentity]] = {}
    for identity in identities:
        if identity.label:
            by_label.setdefault(identity.label, []).append(identity)
    names = policy_names(identities)
    return [f"label '{label}' names {len(same)} different policies ("
            + "; ".join(f"{i.preset} fingerprint {i.short_fingerprint}, shown as {names[i]}" for i in same)
            + "): their results are not merged; give each its own --label"
            for label, same in by_label.items() if len(same) > 1]
