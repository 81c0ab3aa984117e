"""Checkpoint layouts: backend detection and norm stats found in (and read from) openpi and lerobot folders."""

import json

import numpy as np
import pytest

from bench.errors import BenchError
from bench.policies.pi_checkpoint import detect_backend, find_norm_stats, lerobot_uses_quantiles, load_norm_stats

STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")


def openpi_stats(n_state: int, n_actions: int) -> dict:
    def stats(n, offset):
        return {name: (np.arange(n) + offset + i).tolist() for i, name in enumerate(STAT_NAMES)}

    return {"norm_stats": {"state": stats(n_state, 0.0), "actions": stats(n_actions, 10.0)}}


def save_lerobot_normalizer(folder, mode: str = "QUANTILES") -> dict:
    """The normalizer lerobot's own processor pipeline saves beside a policy; returns the stats written."""
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.processor import NormalizerProcessorStep, PolicyProcessorPipeline

    stats = {"observation.state": {n: np.arange(8, dtype=np.float32) + i for i, n in enumerate(STAT_NAMES)},
             "action": {n: np.arange(7, dtype=np.float32) + 10 + i for i, n in enumerate(STAT_NAMES)}}
    norm_mode = NormalizationMode[mode]
    step = NormalizerProcessorStep(
        features={"observation.state": PolicyFeature(FeatureType.STATE, (8,)),
                  "action": PolicyFeature(FeatureType.ACTION, (7,))},
        norm_map={FeatureType.STATE: norm_mode, FeatureType.ACTION: norm_mode}, stats=stats)
    PolicyProcessorPipeline(steps=[step], name="policy_preprocessor").save_pretrained(folder)
    return stats


def test_backend_from_layout(tmp_path):
    (tmp_path / "openpi" / "params").mkdir(parents=True)
    (tmp_path / "lerobot").mkdir()
    (tmp_path / "lerobot" / "config.json").write_text("{}")
    (tmp_path / "other").mkdir()
    assert detect_backend(tmp_path / "openpi") == "openpi"
    assert detect_backend(tmp_path / "lerobot") == "lerobot"
    assert detect_backend(tmp_path / "other") is None


def test_openpi_assets(tmp_path):
    ckpt = tmp_path / "29999"
    (ckpt / "assets" / "maniskill").mkdir(parents=True)
    path = ckpt / "assets" / "maniskill" / "norm_stats.json"
    path.write_text(json.dumps(openpi_stats(8, 7)))
    assert find_norm_stats(ckpt) == path  # the only asset
    assert find_norm_stats(ckpt, "maniskill") == path
    with pytest.raises(BenchError, match="check asset_id"):
        find_norm_stats(ckpt, "libero")
    (ckpt / "assets" / "libero").mkdir()
    (ckpt / "assets" / "libero" / "norm_stats.json").write_text(json.dumps(openpi_stats(8, 7)))
    with pytest.raises(BenchError, match=r"several assets \(libero, maniskill\): set asset_id"):
        find_norm_stats(ckpt)
    norm = load_norm_stats(path, use_quantiles=True)
    np.testing.assert_array_equal(norm["state"].q01, np.arange(8) + 4)
    np.testing.assert_array_equal(norm["actions"].mean, np.arange(7) + 10)


def test_no_norm_stats_names_where_it_looked(tmp_path):
    with pytest.raises(BenchError, match="no norm stats in .*assets/<asset_id>/norm_stats.json.*--norm-stats"):
        find_norm_stats(tmp_path)


@pytest.mark.parametrize("mode,quantiles", [("QUANTILES", True), ("MEAN_STD", False)])
def test_lerobot_normalizer(tmp_path, mode, quantiles):
    stats = save_lerobot_normalizer(tmp_path, mode)
    (tmp_path / "config.json").write_text(json.dumps({"type": "pi05", "normalization_mapping": {
        "VISUAL": "IDENTITY", "STATE": mode, "ACTION": mode}}))
    path = find_norm_stats(tmp_path)
    assert path.name == "policy_preprocessor_step_0_normalizer_processor.safetensors"
    assert lerobot_uses_quantiles(tmp_path) == {"state": quantiles, "actions": quantiles}
    norm = load_norm_stats(path, use_quantiles=quantiles)
    for key, feature in (("state", "observation.state"), ("actions", "action")):
        for name in ("mean", "std", "q01", "q99"):
            np.testing.assert_array_equal(getattr(norm[key], name), stats[feature][name])
    x = np.random.default_rng(0).uniform(0, 20, (3, 7))
    np.testing.assert_allclose(norm["actions"].unnormalize(norm["actions"].normalize(x)), x, rtol=1e-6)


def test_lerobot_normalization_modes(tmp_path):
    assert lerobot_uses_quantiles(tmp_path) is None  # no config.json: the model's default applies
    (tmp_path / "config.json").write_text(json.dumps({"normalization_mapping": {"STATE": "QUANTILES",
                                                                                 "ACTION": "MEAN_STD"}}))
    assert lerobot_uses_quantiles(tmp_path) == {"state": True, "actions": False}  # lerobot lets each feature say
    save_lerobot_normalizer(tmp_path, "QUANTILES")
    norm = load_norm_stats(find_norm_stats(tmp_path), lerobot_uses_quantiles(tmp_path), convention="lerobot")
    assert norm["state"].use_quantiles and not norm["actions"].use_quantiles
    (tmp_path / "config.json").write_text(json.dumps({"normalization_mapping": {"STATE": "MIN_MAX", "ACTION": "MIN_MAX"}}))
    with pytest.raises(BenchError, match="MIN_MAX.*is not supported"):
        lerobot_uses_quantiles(tmp_path)


def test_corrupt_norm_stats(tmp_path):
    bad = tmp_path / "policy_preprocessor_step_0_normalizer_processor.safetensors"
    bad.write_bytes(b"\x00not a safetensors file")
    with pytest.raises(BenchError, match="norm stats need 'state' and 'actions'.*unreadable safetensors"):
        load_norm_stats(bad, use_quantiles=True)
    truncated = tmp_path / "norm_stats.json"
    truncated.write_text(json.dumps(openpi_stats(8, 7))[:100])
    with pytest.raises(BenchError, match="norm_stats.json: norm stats need"):
        load_norm_stats(truncated, use_quantiles=False)
