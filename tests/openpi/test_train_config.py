"""`train_config`: the openpi TrainConfig a checkpoint was trained with supplies what the checkpoint does not record.

Runs in the openpi environment (.venv-openpi), on openpi's tiny model (random weights) where a policy is built;
refusals come before any model is built.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from conftest import require  # tests/conftest.py

# not plain "openpi": with pytest's rootdir on sys.path, tests/openpi imports as a namespace package of that name
require("openpi.training.config", "needs the openpi environment: scripts/setup-openpi-env.sh")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from bench.errors import BenchError  # noqa: E402
from bench.policies import pi  # noqa: E402
from bench.policies import pi_train_config  # noqa: E402


@pytest.fixture
def policy_params(spm_model, norm_stats):
    return dict(backend="openpi", tokenizer=str(spm_model), norm_stats=str(norm_stats), tiny=True)


@pytest.fixture
def own_configs(tmp_path, monkeypatch):
    """A module of the user's own TrainConfigs, importable as `my_train_configs:<attr>`."""
    (tmp_path / "my_train_configs.py").write_text(textwrap.dedent("""
        from openpi import transforms
        from openpi.models import pi0_config
        from openpi.training import config

        _mask = transforms.make_bool_mask(6, -1)
        DELTA = config.TrainConfig(
            name="my_delta", model=pi0_config.Pi0Config(pi05=True, action_horizon=16),
            data=config.SimpleDataConfig(data_transforms=lambda model: transforms.Group(
                inputs=[transforms.DeltaActions(_mask)], outputs=[transforms.AbsoluteActions(_mask)])))
        ABSOLUTE = config.TrainConfig(name="my_absolute", model=pi0_config.Pi0Config(pi05=True, action_horizon=16),
                                      data=config.SimpleDataConfig(data_transforms=lambda model: transforms.Group()))
        NOT_A_CONFIG = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_train_configs", None)


def test_pi05_libero_sets_horizon_and_discrete_state_input(policy_params):
    """openpi's pi05_libero: Pi0Config(pi05=True, action_horizon=10, discrete_state_input=False)."""
    pi.PiPolicy.preflight(model="pi05", train_config="pi05_libero", **policy_params)  # openpi is importable here
    policy = pi.PiPolicy(1, model="pi05", train_config="pi05_libero", **policy_params)
    described = policy.describe()
    assert described["train_config"] == "pi05_libero"
    assert described["action_horizon"] == 10
    assert described["discrete_state_input"] is False
    assert described["max_token_len"] == 200
    assert (policy._backend.action_horizon, policy._backend.max_token_len) == (10, 200)  # openpi's own model config
    assert "prompt_with_state" not in described["transforms"]  # Pi0's prompt format, no state in it


def test_own_train_config_by_module_attr(policy_params, own_configs):
    policy = pi.PiPolicy(1, model="pi05", train_config="my_train_configs:ABSOLUTE", num_steps=5, **policy_params)
    described = policy.describe()
    assert (described["action_horizon"], described["denoising_steps"]) == (16, 5)
    assert described["discrete_state_input"] is True  # Pi0Config's default for pi05


@pytest.mark.parametrize("preset, message", [
    (dict(model="pi0"), 'preset model = "pi0", but train_config \'pi05_libero\' trains pi05'),
    (dict(model="pi05", action_horizon=50), "preset action_horizon = 50, but train_config 'pi05_libero' has "
                                            "action_horizon 10: remove action_horizon"),
    (dict(model="pi05", discrete_state_input=True), "preset discrete_state_input = true, but train_config "
                                                    "'pi05_libero' has discrete_state_input false"),
], ids=["model", "action_horizon", "discrete_state_input"])
def test_a_contradicting_preset_is_refused(policy_params, preset, message):
    with pytest.raises(BenchError, match="^" + message.replace("(", r"\(")) as e:
        pi.PiPolicy(1, train_config="pi05_libero", **preset, **policy_params)
    assert "\n" not in str(e.value)


def test_an_agreeing_preset_is_accepted(policy_params):
    described = pi.PiPolicy(1, model="pi05", action_horizon=10, discrete_state_input=False,
                            train_config="pi05_libero", **policy_params).describe()
    assert described["action_horizon"] == 10


def test_delta_action_configs_are_refused(own_configs):
    # the registry's pi0_libero: LeRobotLiberoDataConfig(extra_delta_transform=True)
    with pytest.raises(BenchError, match=r"'pi0_libero' trains on delta actions \(LeRobotLiberoDataConfig"
                                         r"\(extra_delta_transform=True\)"):
        pi_train_config.load("pi0_libero")
    # the user's own: DeltaActions in a SimpleDataConfig's data transforms
    with pytest.raises(BenchError, match="delta actions .SimpleDataConfig.data_transforms"):
        pi_train_config.load("my_train_configs:DELTA")
    # pi0_aloha: joint deltas (use_delta_joint_actions), pi05_libero: none
    with pytest.raises(BenchError, match="use_delta_joint_actions=True"):
        pi_train_config.load("pi0_aloha")
    assert pi_train_config.load("pi05_libero").action_horizon == 10


def test_unknown_names_are_refused_with_close_names(own_configs):
    with pytest.raises(BenchError, match="unknown openpi train config 'pi05_libro': did you mean pi05_libero"):
        pi_train_config.load("pi05_libro")
    with pytest.raises(BenchError, match="not importable"):
        pi_train_config.load("my_train_configs:MISSING")
    with pytest.raises(BenchError, match="is a int, not an openpi TrainConfig"):
        pi_train_config.load("my_train_configs:NOT_A_CONFIG")


def test_pi0_fast_is_refused():
    with pytest.raises(BenchError, match="'pi0_fast_droid' trains a pi0_fast model"):
        pi_train_config.load("pi0_fast_droid")
