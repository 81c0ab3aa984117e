"""What a Pi0 / Pi0.5 checkpoint folder says about itself: which backend reads it, and where its norm stats are.

Two layouts exist in the wild, and users pass either without saying which:
- openpi (JAX) step folders: `<ckpt>/params/` (orbax) and `<ckpt>/assets/<asset_id>/norm_stats.json`
  ({"norm_stats": {"state": {...}, "actions": {...}}}), as openpi training writes and Physical Intelligence releases.
- lerobot (PyTorch) folders: `config.json` + `model.safetensors`, with the processor pipeline saved beside them;
  its normalizer step's stats are `policy_preprocessor_step_<i>_normalizer_processor.safetensors`
  (flat keys "observation.state.mean", "action.q01", ...), and `config.json`'s `normalization_mapping` says which
  statistics the model was trained with.
Only file formats are read here (json, safetensors): no openpi or lerobot import, so this works in either venv.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import BenchError
from bench.policies.pi_normalize import Normalizer

OPENPI_MARKER = "params"
LEROBOT_MARKER = "config.json"
LEROBOT_NORMALIZER_GLOB = "policy_preprocessor_step_*_normalizer_processor.safetensors"
LEROBOT_KEYS = {"state": "observation.state", "actions": "action"}  # bench/openpi key -> lerobot feature
LEROBOT_MODES = {"QUANTILES": True, "MEAN_STD": False}  # NormalizationMode -> use_quantiles
TINY_MARKER = "bench_tiny_arch.json"  # a checkpoint saved from a tiny test model (bench.policies.pi_tiny) says so


def detect_backend(checkpoint: Path) -> str | None:
    """"openpi" or "lerobot" from the folder's layout; None when it is neither (the backend then explains)."""
    if (checkpoint / OPENPI_MARKER).is_dir():
        return "openpi"
    if (checkpoint / LEROBOT_MARKER).is_file():
        return "lerobot"
    return None


OPENPI_PI0_PARAM = "state_proj"  # openpi's Pi0 projects the continuous state; Pi0.5 has no such layer (pi0.py)
OPENPI_METADATA = "_METADATA"  # orbax's tree metadata: the parameter names, readable without loading anything


def checkpoint_model(checkpoint: Path) -> str | None:
    """"pi0" or "pi05" as the folder says (lerobot: config.json's type; openpi: whether the orbax metadata names
    Pi0's state projection); None when it does not say."""
    config = checkpoint / LEROBOT_MARKER
    if config.is_file():
        try:
            kind = json.loads(config.read_text()).get("type")
        except json.JSONDecodeError:
            return None
        return kind if kind in ("pi0", "pi05") else None
    metadata = checkpoint / OPENPI_MARKER / OPENPI_METADATA
    if metadata.is_file():
        return "pi0" if OPENPI_PI0_PARAM in metadata.read_text(errors="replace") else "pi05"
    return None


def is_tiny(checkpoint: Path) -> bool:
    """Whether the folder holds a tiny test model (its architecture is in TINY_MARKER), not a real one."""
    return (checkpoint / TINY_MARKER).is_file()


def find_norm_stats(checkpoint: Path, asset_id: str | None = None) -> Path:
    """The norm stats file a checkpoint carries; a BenchError naming where it looked when there is none."""
    assets = checkpoint / "assets"
    if assets.is_dir():
        if asset_id:
            path = assets / asset_id / "norm_stats.json"
            if not path.is_file():
                raise BenchError(f"norm stats not found at {path}: check asset_id in the preset or pass --norm-stats")
            return path
        found = sorted(assets.glob("*/norm_stats.json"))
        if len(found) == 1:
            return found[0]
        if found:
            ids = ", ".join(p.parent.name for p in found)
            raise BenchError(f"{assets} holds norm stats for several assets ({ids}): set asset_id in the preset "
                             "or pass --norm-stats")
    found = sorted(checkpoint.glob(LEROBOT_NORMALIZER_GLOB))
    if len(found) == 1:
        return found[0]
    raise BenchError(f"no norm stats in {checkpoint} (looked for assets/<asset_id>/norm_stats.json and "
                     f"{LEROBOT_NORMALIZER_GLOB}): pass --norm-stats path/to/norm_stats.json")


def lerobot_uses_quantiles(checkpoint: Path | None) -> dict[str, bool] | None:
    """What a lerobot checkpoint's config says about normalization, per key ("state", "actions"): True for
    QUANTILES, False for MEAN_STD (lerobot lets a config set each feature's mode); None if it does not say."""
    config_file = checkpoint / LEROBOT_MARKER if checkpoint else None
    if config_file is None or not config_file.is_file():
        return None
    try:
        mapping = json.loads(config_file.read_text()).get("normalization_mapping") or {}
    except json.JSONDecodeError as e:
        raise BenchError(f"{config_file} is not valid JSON ({e}): a damaged checkpoint? copy it again") from None
    modes = {key: mapping.get(feature) for key, feature in (("state", "STATE"), ("actions", "ACTION"))}
    if all(mode is None for mode in modes.values()):
        return None
    if not set(modes.values()) <= LEROBOT_MODES.keys():
        raise BenchError(f"{config_file}: normalization_mapping {mapping} is not supported; bench normalizes state "
                         f"and actions with {' or '.join(LEROBOT_MODES)} each")
    return {key: LEROBOT_MODES[mode] for key, mode in modes.items()}


def read_stats(path: Path) -> dict[str, dict]:
    """{"state": {"mean": ..., ...}, "actions": {...}} from either format."""
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            flat = load_file(str(path))
        except Exception as e:  # safetensors' own error type for a corrupt or truncated file
            raise ValueError(f"unreadable safetensors file: {e}") from None
        stats: dict[str, dict] = {}
        for key, feature in LEROBOT_KEYS.items():
            prefix = feature + "."
            stats[key] = {name.removeprefix(prefix): value for name, value in flat.items()
                          if name.startswith(prefix) and "." not in name.removeprefix(prefix)}
        return stats
    stats = json.loads(path.read_text())
    return stats.get("norm_stats", stats)


def load_norm_stats(path: Path, use_quantiles: bool | dict[str, bool],
                    convention: str = "openpi") -> dict[str, Normalizer]:
    """Normalizers for "state" and "actions" from openpi's norm_stats.json or a lerobot normalizer file, in the
    arithmetic of `convention` (the trainer: "openpi" or "lerobot", `pi_normalize`); `use_quantiles` for both, or
    per key."""
    if not path.is_file():
        raise BenchError(f"norm stats not found at {path}: pass --norm-stats with the checkpoint's norm_stats.json")
    modes = use_quantiles if isinstance(use_quantiles, dict) else dict.fromkeys(("state", "actions"), use_quantiles)
    try:
        stats = read_stats(path)
        return {key: Normalizer.from_stats(stats[key], modes[key], convention) for key in ("state", "actions")}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as e:
        quantiles = " with q01/q99 (quantile normalization)" if any(modes.values()) else ""
        raise BenchError(f"{path}: norm stats need 'state' and 'actions' entries with mean/std{quantiles} ({e})") from None
