"""What an openpi TrainConfig says about the checkpoint it trained: the settings openpi checkpoints do not record.

An openpi step folder holds weights and norm stats only; the action horizon, prompt length, Pi0/Pi0.5 switch,
`discrete_state_input` and the action transforms live in the TrainConfig (openpi/training/config.py), and the weights
load whatever the horizon. `train_config` in a Pi preset names that TrainConfig: a name in openpi's registry
(`get_config(name)`, e.g. "pi05_libero") or "module:attr" for the user's own TrainConfig object.

Importing openpi's config module takes seconds (jax, torch, transformers), so this runs when the policy is built,
before its weights load; `pi._check_files` only checks that openpi is importable at all.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
from dataclasses import dataclass

from bench.errors import BenchError, unknown_name

OPENPI_SETUP = "bash scripts/setup-openpi-env.sh, then run bench with .venv-openpi/bin/python"
CONFIG_MODULE = "openpi.training.config"


@dataclass(frozen=True)
class TrainSettings:
    """The settings bench takes from a TrainConfig (openpi/models/pi0_config.py's Pi0Config fields)."""

    name: str  # what the preset named
    model: str  # "pi0" | "pi05" (Pi0Config.pi05)
    action_horizon: int
    max_token_len: int
    discrete_state_input: bool  # Pi0Config.discrete_state_input (its default: pi05)


def openpi_importable() -> bool:
    try:  # not find_spec("openpi"): a folder named openpi on sys.path (tests/openpi) would pass for it
        return importlib.util.find_spec(CONFIG_MODULE) is not None
    except ImportError:
        return False


def require_openpi() -> None:
    """A one-line BenchError where openpi's config module cannot be imported (e.g. lerobot's venv)."""
    if not openpi_importable():
        raise BenchError(f"train_config needs the openpi environment ({CONFIG_MODULE} is not importable here): "
                         f"{OPENPI_SETUP}")


def _lookup(spec: str):
    """The TrainConfig object `spec` names: a registry name, or "module:attr"."""
    require_openpi()
    config = importlib.import_module(CONFIG_MODULE)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise BenchError(f"train_config '{spec}' is not importable ({e}): pass a registry name or "
                             "module:attr of a TrainConfig") from None
        if not isinstance(obj, config.TrainConfig):
            raise BenchError(f"train_config '{spec}' is a {type(obj).__name__}, not an openpi TrainConfig")
        return obj
    known = getattr(config, "_CONFIGS_DICT", {})
    try:
        return config.get_config(spec)
    except ValueError:
        raise unknown_name("openpi train config", spec, known,
                           hint=" (or module:attr of your own TrainConfig)") from None


def _delta_reason(data, model_config) -> str | None:
    """Where the data config's transforms turn actions into deltas (openpi's DeltaActions / AbsoluteActions), or None.

    Read from the factory's fields, without `data.create()` (which loads norm stats and the PaliGemma tokenizer, from
    gs:// when not cached): openpi's factories (training/config.py) push DeltaActions/AbsoluteActions when
    LeRobotLiberoDataConfig.extra_delta_transform, LeRobotAlohaDataConfig.use_delta_joint_actions, or
    RLDSDroidDataConfig.action_space == JOINT_POSITION; SimpleDataConfig's `data_transforms` factory is called (it
    only builds transform objects). Another factory: its Group fields, its `data_transforms` factory and boolean
    fields named *delta* (model_transforms are not built: they load the tokenizer); failing those, a `create()`
    whose source mentions DeltaActions counts as delta (bench cannot tell when).
    """
    from openpi import transforms as _transforms
    from openpi.training import config as _config

    def in_group(group) -> bool:
        steps = [*getattr(group, "inputs", ()), *getattr(group, "outputs", ())]
        return any(isinstance(s, (_transforms.DeltaActions, _transforms.AbsoluteActions)) for s in steps)

    kind = type(data).__name__
    if isinstance(data, _config.LeRobotLiberoDataConfig):
        return f"{kind}(extra_delta_transform=True)" if data.extra_delta_transform else None
    if isinstance(data, _config.LeRobotAlohaDataConfig):
        return f"{kind}(use_delta_joint_actions=True)" if data.use_delta_joint_actions else None
    if isinstance(data, _config.RLDSDroidDataConfig):
        joint = getattr(data.action_space, "name", None) == "JOINT_POSITION"
        return f"{kind}(action_space=JOINT_POSITION)" if joint else None
    if isinstance(data, (_config.FakeDataConfig, _config.LeRobotDROIDDataConfig)):
        return None  # no delta transform in their create()
    for field in dataclasses.fields(data):
        value = getattr(data, field.name)
        if isinstance(value, bool) and "delta" in field.name.lower() and value:
            return f"{kind}({field.name}=True)"
        if isinstance(value, _transforms.Group) and in_group(value):
            return f"{kind}.{field.name}"
        if field.name == "data_transforms" and callable(value) and in_group(value(model_config)):
            return f"{kind}.{field.name}"
    if isinstance(data, _config.SimpleDataConfig):
        return None
    try:
        source = inspect.getsource(type(data).create)
    except (OSError, TypeError):
        source = ""
    return f"{kind}.create() (applies DeltaActions; bench cannot tell when)" if "DeltaActions" in source else None


def load(spec: str) -> TrainSettings:
    """The settings of the TrainConfig `spec` names; BenchErrors for what the openpi backend cannot run."""
    train = _lookup(spec)
    model_config = train.model
    model_type = getattr(getattr(model_config, "model_type", None), "value", None)
    if model_type not in ("pi0", "pi05"):
        raise BenchError(f"train_config '{spec}' trains a {model_type or type(model_config).__name__} model; bench "
                         "runs Pi0 and Pi0.5 (openpi's Pi0Config) only")
    delta = _delta_reason(train.data, model_config)
    if delta:
        raise BenchError(f"train_config '{spec}' trains on delta actions ({delta}: openpi's DeltaActions / "
                         "AbsoluteActions), which bench's openpi backend does not apply; evaluate a checkpoint "
                         "trained on absolute actions, or serve it with openpi and use a remote preset")
    return TrainSettings(spec, model_type, int(model_config.action_horizon), int(model_config.max_token_len),
                         bool(getattr(model_config, "discrete_state_input", model_type == "pi05")))


def check_preset(train: TrainSettings, model: str, action_horizon: int | None,
                 discrete_state_input: bool | None) -> None:
    """A preset that says otherwise than its TrainConfig is refused, naming both values and the fix."""
    name = train.name
    if model != train.model:
        raise BenchError(f'preset model = "{model}", but train_config \'{name}\' trains {train.model} '
                         f'(pi05={train.model == "pi05"}): set model = "{train.model}" or name the right train_config')
    if action_horizon is not None and action_horizon != train.action_horizon:
        raise BenchError(f"preset action_horizon = {action_horizon}, but train_config '{name}' has action_horizon "
                         f"{train.action_horizon}: remove action_horizon from the preset (train_config sets it)")
    if discrete_state_input is not None and discrete_state_input != train.discrete_state_input:
        raise BenchError(f"preset discrete_state_input = {str(discrete_state_input).lower()}, but train_config "
                         f"'{name}' has discrete_state_input {str(train.discrete_state_input).lower()}: remove "
                         "discrete_state_input from the preset (train_config sets it)")
