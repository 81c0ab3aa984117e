"""Normalization in the trainer's arithmetic (bench.policies.pi_normalize): the lerobot convention held against
lerobot 0.6.1's own NormalizerProcessorStep / UnnormalizerProcessorStep, with the same statistics, bit for bit,
including dims whose std or q99 - q01 is zero. (The openpi convention is held against openpi's own transforms in
tests/openpi/test_pi_transforms_openpi.py, in the openpi environment.)"""

import numpy as np
import pytest

from conftest import require

from bench.policies.pi_normalize import Normalizer
from bench.policies.pi_transforms import Frame, Pipeline, discretize_state, normalize, pad_state, unnormalize

LEROBOT = "lerobot 0.6.1: pip install -e '.[lerobot]'"


def stats(n: int, seed: int) -> dict:
    """Statistics of different scales; the last dim is constant (std 0, q01 == q99), which both trainers must
    survive."""
    rng = np.random.default_rng(seed)
    q01 = rng.uniform(-3, -0.5, n)
    s = {"mean": rng.normal(size=n), "std": rng.uniform(0.05, 3, n), "q01": q01, "q99": q01 + rng.uniform(0.1, 4, n)}
    s["std"][-1], s["q99"][-1] = 0.0, q01[-1]
    return {k: v.astype(np.float32) for k, v in s.items()}  # lerobot stores float32 statistics


STATE, ACTIONS = stats(8, 0), stats(7, 1)


def lerobot_steps(mode: str):
    require("lerobot.processor", LEROBOT)
    from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.processor import NormalizerProcessorStep, UnnormalizerProcessorStep

    kwargs = dict(features={"observation.state": PolicyFeature(FeatureType.STATE, (8,)),
                            "action": PolicyFeature(FeatureType.ACTION, (7,))},
                  norm_map={FeatureType.STATE: NormalizationMode[mode], FeatureType.ACTION: NormalizationMode[mode]},
                  stats={"observation.state": STATE, "action": ACTIONS})
    return NormalizerProcessorStep(**kwargs), UnnormalizerProcessorStep(**kwargs)


def states(rows: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    x = rng.normal(scale=3.0, size=(rows, 8)).astype(np.float32)
    x[:3] = [[0] * 8, [-10] * 8, [10] * 8]
    x[3] = STATE["q01"]  # exactly on the constant dim's value: 0 / eps
    return x


@pytest.mark.parametrize("mode", ["MEAN_STD", "QUANTILES"])
def test_lerobot_convention_equals_lerobots_normalizer(mode):
    import torch
    from lerobot.processor.converters import create_transition
    from lerobot.utils.constants import OBS_STATE

    normalizer, unnormalizer = lerobot_steps(mode)
    quantiles = mode == "QUANTILES"
    state, actions = states(256), np.random.default_rng(3).normal(scale=1.5, size=(4, 50, 7)).astype(np.float32)

    theirs = normalizer(create_transition(observation={OBS_STATE: torch.from_numpy(state)}))
    theirs_state = theirs[next(k for k in theirs if k.value == "observation")][OBS_STATE].numpy()
    ours = Pipeline([normalize(Normalizer.from_stats(STATE, quantiles, "lerobot")), pad_state(32)])(
        Frame({}, [""] * len(state), state=state))
    assert ours.state.dtype == np.float32 and theirs_state.dtype == np.float32
    np.testing.assert_array_equal(ours.state[:, :8], theirs_state)
    assert np.isfinite(theirs_state).all() and (np.abs(theirs_state[:, -1]) > 1e6).any()  # the constant dim: / eps
    np.testing.assert_array_equal(discretize_state(ours.state[:, :8]), discretize_state(theirs_state))

    theirs = unnormalizer(create_transition(action=torch.from_numpy(actions)))
    theirs_actions = theirs[next(k for k in theirs if k.value == "action")].numpy()
    ours_actions = unnormalize(Normalizer.from_stats(ACTIONS, quantiles, "lerobot"))(actions)
    assert ours_actions.dtype == np.float32
    np.testing.assert_array_equal(ours_actions, theirs_actions)


@pytest.mark.parametrize("use_quantiles", [False, True])
def test_conventions_differ_where_the_trainers_do(use_quantiles):
    """Same stats, different arithmetic: openpi's +1e-6 against lerobot's 1e-8 (quantiles: only where the width is
    zero), and openpi's float64 against lerobot's float32; a zero-width dim is finite under both."""
    state = states(64)
    openpi = Normalizer.from_stats(STATE, use_quantiles, "openpi")
    lerobot = Normalizer.from_stats(STATE, use_quantiles, "lerobot")
    a, b = openpi.normalize(state.astype(np.float64)), lerobot.normalize(state)
    assert a.dtype == np.float64 and b.dtype == np.float32 and np.isfinite(a).all() and np.isfinite(b).all()
    np.testing.assert_allclose(a[:, :-1], b[:, :-1], rtol=1e-5, atol=1e-5)  # close where the width is not zero
    assert (a[:, :-1] != b[:, :-1]).any()
    np.testing.assert_allclose(b[4:, -1], a[4:, -1] * 100, rtol=1e-3)  # / 1e-8 against / 1e-6
    assert openpi.name == f"{openpi.kind}, openpi" and lerobot.name == f"{lerobot.kind}, lerobot"


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="convention"):
        Normalizer.from_stats(STATE, False, "jax")
