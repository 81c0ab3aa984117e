"""Pi0/Pi0.5 policy: preflight errors (one line, exit 2, nothing written), `bench run` on lerobot checkpoints, noise
per episode. (Its transforms: test_pi_transforms.py; tokenizer formats against openpi's: tests/openpi.)"""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.results import read_episodes

from conftest import read_manifest, require, run_dir_of
from test_pi_checkpoint import save_lerobot_normalizer

LEROBOT = "needs lerobot[pi]==0.6.1: pip install -e '.[lerobot]'"


@pytest.mark.parametrize("extra,message", [
    ([], "pi05 needs a checkpoint: pass --checkpoint PATH"),
    (["--checkpoint", "missing_ckpt"], "checkpoint folder not found: missing_ckpt"),
    (["--checkpoint", "{tmp}", "--tokenizer", "missing.model"], "PaliGemma tokenizer not found at missing.model"),
    (["--checkpoint", "{tmp}", "--tokenizer", "{spm}"], "is neither an openpi checkpoint (no params/) nor a lerobot"),
    (["--checkpoint", "{tmp}", "--tokenizer", "{spm}", "--backend", "openpi"], "no norm stats in"),
])
def test_pi_preflight_errors(bench, tmp_path, spm_model, extra, message):
    extra = [arg.format(tmp=tmp_path, spm=spm_model) for arg in extra]
    code, text = bench("run", "--policy", "pi05", "--output", str(tmp_path / "out"), *extra)
    assert code == 2 and message in " ".join(text.split())
    assert not (tmp_path / "out").exists()


def test_pi_preflight_norm_stats(bench, tmp_path, spm_model, norm_stats):
    args = ["run", "--policy", "pi05", "--checkpoint", str(tmp_path), "--backend", "lerobot", "--tokenizer",
            str(spm_model), "--output", str(tmp_path / "out")]
    code, text = bench(*args, "--norm-stats", str(tmp_path / "nope.json"))
    assert code == 2 and "norm stats not found at" in text
    stats = json.loads(norm_stats.read_text())
    del stats["norm_stats"]["state"]["q01"]
    norm_stats.write_text(json.dumps(stats))
    code, text = bench(*args, "--norm-stats", str(norm_stats))
    assert code == 2 and "with q01/q99 (quantile normalization)" in " ".join(text.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case,message", [
    ("corrupt_config", "config.json is not valid JSON"),
    ("no_weights", "model.safetensors"),
    ("action_dim", "action dimension mismatch: pi0 emits 6-D actions, PickCube-v1's controller pd_ee_delta_pose"),
])
def test_bad_checkpoints_and_dimensions_via_bench_run(bench, tmp_path, spm_model, norm_stats, case, message):
    """Corrupt or incomplete lerobot checkpoints and a preset whose action dims do not fit: exit 2, no output."""
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    preset = tmp_path / "pi0-mine.toml"
    preset.write_text(Path(__file__).parents[1].joinpath("policies", "pi0.toml").read_text())
    extra = ["--checkpoint", str(checkpoint)]
    if case == "corrupt_config":
        (checkpoint / "config.json").write_text('{"type": "pi0", ')
        (checkpoint / "model.safetensors").write_bytes(b"")
    elif case == "no_weights":
        (checkpoint / "config.json").write_text('{"type": "pi0"}')
    else:  # a tiny random model, so the checkpoint is fine and only the dimensions are wrong
        preset.write_text(preset.read_text().replace("action_dim = 7", "action_dim = 6\ntiny = true")
                          .replace('backend = "auto"', 'backend = "lerobot"'))
        extra = []
    code, text = bench("run", "--policy", str(preset), *extra, "--tokenizer", str(spm_model), "--norm-stats",
                       str(norm_stats), "--tasks", "PickCube-v1", "--output", str(tmp_path / "out"))
    assert code == 2 and message in " ".join(text.split()), text
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("model", ["pi0", "pi05"])
def test_bench_run_with_a_lerobot_checkpoint(bench, tmp_path, spm_model, norm_stats, short_tasks, model):
    """Real lerobot Pi0/Pi0.5 (tiny, random weights) saved as an HF-format checkpoint, evaluated by `bench run`."""
    require("lerobot.policies.pi0.modeling_pi0", LEROBOT)
    from bench.policies.pi_tiny import TinyLerobotPiBackend

    checkpoint = tmp_path / "ckpt"
    TinyLerobotPiBackend(model, seed=3).save(checkpoint)
    output = tmp_path / "out"
    if model == "pi0":  # explicit backend and norm stats
        extra = ["--backend", "lerobot", "--norm-stats", str(norm_stats)]
    else:  # both found in the checkpoint: its layout and the normalizer lerobot's pipeline saved beside it
        # (and that it holds a tiny test model, from the marker the tiny backend saved beside it)
        save_lerobot_normalizer(checkpoint)
        extra = []
    code, text = bench("run", "--policy", model, "--checkpoint", str(checkpoint), "--tokenizer", str(spm_model),
                       "--tasks", "PickCube-v1", "--episodes", "2", "--num-envs", "2", "--replan-steps", "10",
                       "--tasks-dir", str(short_tasks), "--output", str(output), *extra)
    assert code == 0, text
    run = run_dir_of(output)
    episodes = read_episodes(run)
    assert len(episodes) == 2 and (episodes["steps"] == 50).all()
    described = read_manifest(run)["policy"]["describe"]
    assert described["model"] == model and described["backend"] == "lerobot"
    assert described["normalization"] == ("quantiles" if model == "pi05" else "mean_std")
    assert described["normalization_convention"] == "lerobot"  # a lerobot checkpoint: lerobot's arithmetic
    if model == "pi05":
        assert described["norm_stats"].endswith("policy_preprocessor_step_0_normalizer_processor.safetensors")
    assert described["checkpoint_fingerprint"] == TinyLerobotPiBackend(model, checkpoint).fingerprint()
    assert described["action_horizon"] == 50
    assert described["tiny"] is True
    prompt = ["prompt_with_state(256 bins)", "tokenize(200)"] if model == "pi05" else [
        "prompt", "tokenize(48, pi0_format)"]
    assert described["transforms"] == [
        "cameras(base_camera->base_0_rgb, hand_camera->left_wrist_0_rgb, none->right_wrist_0_rgb)",
        "resize_with_pad(224)", "state(qpos8)", f"normalize({described['normalization']}, lerobot)", *prompt,
        "pad_state(32)"]
    assert described["output_transforms"] == [f"unnormalize({described['normalization']}, lerobot)",
                                             "action_dims(7)"]


def test_an_episode_acts_the_same_whatever_shares_its_batch(spm_model, norm_stats):
    """Noise comes from the episode's seed, so an episode replays alone, in another slot or batch (resume)."""
    require("lerobot.policies.pi0.modeling_pi0", LEROBOT)
    from bench.policies import EpisodeContext
    from bench.policies.pi import PiPolicy
    from bench.tasks import Episode, load_suite

    policy = PiPolicy(3, model="pi0", backend="lerobot", tokenizer=str(spm_model), norm_stats=str(norm_stats),
                      tiny=True, dtype="float32", device="cpu")
    task = load_suite().tasks["PickCube-v1"]
    rng = np.random.default_rng(0)
    obs = {"sensor_data/base_camera/rgb": rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8),
           "sensor_data/hand_camera/rgb": rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8),
           "agent/qpos": rng.standard_normal((3, 9)).astype(np.float32)}
    low, high = -np.ones(7), np.ones(7)
    for slot, seed in enumerate((11, 22, 33)):
        policy.reset(slot, EpisodeContext(task, Episode(task.id, slot, seed), low, high))
    together = policy.act(obs, np.arange(3))
    policy.reset(0, EpisodeContext(task, Episode(task.id, 1, 22), low, high))  # episode 22 again, alone in slot 0
    alone = policy.act({k: v[1:2] for k, v in obs.items()}, np.array([0]))
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-4, atol=1e-4)
    assert not np.allclose(together[0], together[1])


def test_discrete_state_input_is_a_pi05_setting(spm_model, norm_stats):
    from bench.errors import BenchError
    from bench.policies.pi import PiPolicy

    common = dict(backend="lerobot", tokenizer=str(spm_model), norm_stats=str(norm_stats), tiny=True)
    with pytest.raises(BenchError, match="discrete_state_input is a Pi0.5 setting"):
        PiPolicy.preflight(model="pi0", discrete_state_input=False, **common)
    PiPolicy.preflight(model="pi05", discrete_state_input=False, **common)


@pytest.mark.parametrize("discrete_state_input", [None, True, False])
def test_pi05_without_the_state_in_its_prompt(spm_model, norm_stats, discrete_state_input):
    """openpi's pi05_libero (discrete_state_input=False): the prompt in Pi0's format, the same whatever the state;
    the default (None) and True write the state into it."""
    require("lerobot.policies.pi05.modeling_pi05", LEROBOT)
    from bench.policies import pi_transforms as transforms
    from bench.policies.pi import PiPolicy

    policy = PiPolicy(1, model="pi05", backend="lerobot", tokenizer=str(spm_model), norm_stats=str(norm_stats),
                      tiny=True, dtype="float32", device="cpu", discrete_state_input=discrete_state_input)
    described = policy.describe()
    in_prompt = discrete_state_input is not False
    assert described["discrete_state_input"] is in_prompt
    assert described["transforms"][4:6] == (["prompt_with_state(256 bins)", "tokenize(200)"] if in_prompt else
                                            ["prompt", "tokenize(200, pi0_format)"])
    rng = np.random.default_rng(0)
    obs = {"sensor_data/base_camera/rgb": rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8),
           "sensor_data/hand_camera/rgb": rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8),
           "agent/qpos": rng.standard_normal((1, 9)).astype(np.float32)}
    tokens = [policy._inputs(transforms.Frame({**obs, "agent/qpos": obs["agent/qpos"] + shift}, ["pick cube"])).tokens
              for shift in (0.0, 0.5)]
    assert (tokens[0] != tokens[1]).any() == in_prompt


def test_train_config_needs_the_openpi_environment(spm_model, norm_stats):
    """Outside .venv-openpi, naming an openpi TrainConfig is one line saying where it works (tests/openpi has the
    rest); with lerobot's backend it is refused as an openpi setting."""
    from bench.errors import BenchError
    from bench.policies.pi import PiPolicy
    from bench.policies.pi_train_config import openpi_importable

    common = dict(model="pi05", tokenizer=str(spm_model), norm_stats=str(norm_stats), tiny=True,
                  train_config="pi05_libero")
    with pytest.raises(BenchError, match="action_horizon / num_steps / train_config are openpi settings"):
        PiPolicy.preflight(backend="lerobot", **common)
    if openpi_importable():
        pytest.skip("openpi is importable here: tests/openpi/test_train_config.py covers train_config")
    with pytest.raises(BenchError, match=r"^train_config needs the openpi environment \(openpi.training.config is "
                                         r"not importable here\): bash scripts/setup-openpi-env.sh") as e:
        PiPolicy.preflight(backend="openpi", **common)
    assert "\n" not in str(e.value)
