"""`bench check`: each check flags a seeded mismatch and passes a consistent setup. Pure parts (verdicts, norm stat
tolerances, layout inversion) are tested on arrays; the rest on real ManiSkill envs, tiny lerobot Pi models and a
dataset recorded by `bench record`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.adapters import STATE_LAYOUTS
from bench.check import findings, normstats, replay
from bench.datasets.stats import frame_stats
from bench.policies.pi_normalize import Normalizer
from bench.tasks import load_suite

from conftest import require

LEROBOT = "needs lerobot[pi]==0.6.1: pip install -e '.[lerobot]'"
PRESETS = Path(__file__).parents[1] / "policies"


# --- pure functions ------------------------------------------------------------------------------------------------

def test_replay_verdict_needs_the_policy_to_beat_the_mean_action():
    assert replay.replay_verdict(0.10, 0.10) == findings.FAIL  # no better than the mean action
    assert replay.replay_verdict(0.20, 0.10) == findings.FAIL
    assert replay.replay_verdict(0.07, 0.10) == findings.WARN  # explains 30% of the spread
    assert replay.replay_verdict(0.02, 0.10) == findings.OK
    assert replay.replay_verdict(0.0, 0.0) == findings.OK and replay.replay_verdict(0.1, 0.0) == findings.FAIL


def test_replay_findings_score_chunks_against_recorded_actions_and_the_mean():
    rng = np.random.default_rng(0)
    task = load_suite().tasks["PushCube-v1"]
    actions = [rng.uniform(-1, 1, (30, 7)).astype(np.float32) for _ in range(2)]
    picks = [(0, 0), (0, 25), (1, 10)]
    frames = [replay.ReplayFrame(task, e, 0, {}, {}, actions[e][t:]) for e, t in picks]
    mean = np.concatenate(actions).mean(0)
    exact = np.stack([np.concatenate([actions[e][t:t + 10], np.zeros((max(0, t + 10 - 30), 7))])[:10]
                      for e, t in picks])
    first, chunk = replay.replay_findings(exact, frames, mean)
    assert first.verdict == chunk.verdict == findings.OK
    assert chunk.data["policy"]["pairs"] == 10 + 5 + 10  # only chunk steps with a recorded action count
    noisy = np.broadcast_to(mean, exact.shape) + rng.normal(0, 0.3, exact.shape)
    assert all(f.verdict == findings.FAIL for f in replay.replay_findings(noisy, frames, mean))


def test_state_sensitivity_grades_how_far_a_hair_of_state_moves_the_first_action():
    rng = np.random.default_rng(0)
    task = load_suite().tasks["PushCube-v1"]
    recorded = rng.uniform(-1, 1, (8, 10, 7)).astype(np.float32)
    frames = [replay.ReplayFrame(task, 0, t, {}, {}, recorded[t]) for t in range(8)]
    mean = recorded[:, 0].mean(0)
    chunks = recorded.copy()
    jumped = replay.sensitivity_finding(chunks, chunks + 0.5, frames, mean)  # half the actions' range
    assert jumped.verdict == findings.WARN and jumped.data["ratio"] > 0.2
    steady = replay.sensitivity_finding(chunks, chunks + 1e-3, frames, mean)
    assert steady.verdict == findings.OK and "does not read the state" not in steady.detail
    blind = replay.sensitivity_finding(chunks, chunks.copy(), frames, mean)  # Pi0.5 without the state in its prompt
    assert blind.verdict == findings.OK and "does not read the state" in blind.detail


def test_frames_spread_over_episodes():
    picks = replay.select_frames([10, 30, 5], 4)
    assert picks == [(0, 0), (1, 5), (1, 19), (2, 4)]  # global frames 0, 15, 29, 44
    assert replay.select_frames([3], 10) == [(0, 0), (0, 1), (0, 2)]


@pytest.mark.parametrize("layout", ["qpos", "qpos8", "tcp_pos_quat_gripper", "tcp_pos_axisangle_fingers"])
def test_a_layout_inverted_gives_back_its_state(layout):
    rng = np.random.default_rng(1)
    quat = rng.normal(size=(5, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    obs = {"agent/qpos": rng.normal(size=(5, 9)).astype(np.float32),
           "extra/tcp_pose": np.concatenate([rng.normal(size=(5, 3)), quat], axis=1).astype(np.float32)}
    state = STATE_LAYOUTS[layout](obs).astype(np.float32)
    raw = replay.raw_from_state(state, layout)
    np.testing.assert_allclose(STATE_LAYOUTS[layout](raw), state, atol=1e-5)
    readable = {other: replay.readable(other, raw) for other in STATE_LAYOUTS}
    assert readable[layout] and (readable["qpos8"] if layout == "qpos" else True)
    assert not readable["qpos"] or layout == "qpos"  # what a layout drops is NaN, never made up


def test_norm_stats_tolerance_is_in_dataset_stds():
    rng = np.random.default_rng(2)
    values = rng.normal([0.0, 1.0, 5.0], [1.0, 0.1, 0.0], size=(2000, 3))
    data = frame_stats(values)
    recomputed = {"per frame": data}
    quiet = {name: np.zeros(3) for name in normstats.STATISTICS}  # no sampling noise: the tolerances alone
    same = Normalizer.from_stats({k: v.tolist() for k, v in data.items()}, use_quantiles=True)
    assert normstats.compare("state", same, recomputed, True, quiet, 1).verdict == findings.OK
    shifted = {**data, "q99": data["q99"] + np.array([0.0, 0.03, 0.0])}  # 0.3 std of dim 1
    found = normstats.compare("state", Normalizer.from_stats(shifted, use_quantiles=True), recomputed, True, quiet, 1)
    assert found.verdict == findings.WARN and "worst dim 1 q99" in found.detail
    neutral = Normalizer.from_stats({"mean": [0] * 3, "std": [1] * 3, "q01": [-1] * 3, "q99": [1] * 3}, True)
    found = normstats.compare("state", neutral, recomputed, True, quiet, 1)
    assert found.verdict == findings.FAIL and found.fix
    mean_std = Normalizer.from_stats({**data, "q99": data["q99"] + 10}, use_quantiles=False)  # q99 is not used
    assert normstats.compare("state", mean_std, recomputed, True, quiet, 1).verdict == findings.OK
    wide = Normalizer.from_stats({k: np.pad(v, (0, 29)).tolist() for k, v in data.items()}, use_quantiles=True)
    assert normstats.compare("actions", wide, recomputed, False, quiet, 1).verdict == findings.OK  # padded to 32
    assert normstats.compare("state", wide, recomputed, True, quiet, 1).verdict == findings.FAIL
    # the closer of two recomputations counts (openpi's chunked stats weigh episode ends differently)
    found = normstats.compare("state", Normalizer.from_stats(shifted, True), {**recomputed, "openpi": shifted}, True,
                               quiet, 1)
    assert found.verdict == findings.OK and found.data["recomputed"] == "openpi"


def correlated_episodes(rng, count: int, frames: int = 50, dims: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """(state, actions) episodes of strongly autocorrelated frames (AR(1), 0.95) around a random offset per episode:
    an episode's frames tell little more than one frame does, as in recorded data."""
    x = np.empty((count, frames, dims))
    x[:, 0] = rng.normal(size=(count, dims))
    for t in range(1, frames):
        x[:, t] = 0.95 * x[:, t - 1] + rng.normal(0, np.sqrt(1 - 0.95**2), (count, dims))
    x += rng.normal(size=(count, 1, dims))
    return [(e, e[:, :2]) for e in x]


def test_norm_stats_discount_the_sampling_noise_of_few_episodes():
    """20 small datasets (12 episodes) drawn from the distribution a checkpoint was trained on (500 episodes): the
    deviation alone (the old rule) fails a consistent checkpoint on many of them; beyond 3x the bootstrapped noise,
    Pi0's mean/std never fail and Pi0.5's quantiles fail far less often (a bootstrap of 12 episodes cannot see
    how far the true 1% quantile lies outside them: the docs say so), while stats 2 stds off fail every time."""
    rng = np.random.default_rng(0)
    trained = frame_stats(np.concatenate([s for s, _ in correlated_episodes(rng, 500)]))  # the checkpoint's data
    shifted = {**trained, **{name: trained[name] + 2 * trained["std"] for name in ("mean", "q01", "q99")}}
    old_fails, new_fails, shifted_fails = {True: 0, False: 0}, {True: 0, False: 0}, 0
    for _ in range(20):
        sample = correlated_episodes(rng, 12)
        data = frame_stats(np.concatenate([s for s, _ in sample]))
        noise = normstats.sampling_noise(sample)["state"]
        for quantiles in (True, False):  # Pi0.5, Pi0
            consistent = Normalizer.from_stats(trained, use_quantiles=quantiles)
            deviation = max(d.max() for d in normstats.deviations(consistent, data, data["std"]).values())
            old_fails[quantiles] += deviation > normstats.TOLERANCE_FAIL
            found = normstats.compare("state", consistent, {"per frame": data}, True, noise, 12)
            new_fails[quantiles] += found.verdict == findings.FAIL
            assert "sampling noise" in found.detail and "over 12 episodes" in found.detail
            assert found.data["episodes"] == 12 and all(len(n) == 3 for n in found.data["noise_std"].values())
            shifted_fails += normstats.compare("state", Normalizer.from_stats(shifted, quantiles), {"per frame": data},
                                               True, noise, 12).verdict == findings.FAIL
    assert old_fails[False] >= 3 and new_fails[False] == 0
    assert old_fails[True] >= 15 and new_fails[True] <= old_fails[True] // 2
    assert shifted_fails == 40
    # the bootstrap is seeded, and the noise shrinks as 1/sqrt(episodes): a large dataset is judged nearly as before
    np.testing.assert_array_equal(noise["q99"], normstats.sampling_noise(sample)["state"]["q99"])
    large = normstats.sampling_noise(correlated_episodes(rng, 400))["state"]
    assert all(large[name].max() < noise[name].max() / 2 for name in noise)
    assert large["mean"].max() < 0.06 and large["q99"].max() < 0.2


# --- without a dataset: preset vs checkpoint vs task ---------------------------------------------------------------

def preset_copy(folder: Path, name: str, replacements: dict[str, str]) -> Path:
    text = (PRESETS / f"{name}.toml").read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = folder / f"{name}-copy.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def pi05_checkpoint(tmp_path_factory) -> Path:
    """A tiny random lerobot Pi0.5 saved as an HF-format checkpoint."""
    require("lerobot.policies.pi05.modeling_pi05", LEROBOT)
    from bench.policies.pi_tiny import TinyLerobotPiBackend

    checkpoint = tmp_path_factory.mktemp("ckpt") / "pi05"
    TinyLerobotPiBackend("pi05", seed=1).save(checkpoint)
    return checkpoint


def test_without_a_dataset_a_pi0_preset_on_a_pi05_checkpoint_fails(bench, tmp_path, pi05_checkpoint, spm_model,
                                                                      norm_stats, short_tasks):
    layout = preset_copy(tmp_path, "pi0", {'state_layout = "qpos8"': 'state_layout = "qpos"'})
    out = tmp_path / "check.json"
    code, text = bench("check", "--policy", str(layout), "--checkpoint", str(pi05_checkpoint), "--tokenizer",
                       str(spm_model), "--norm-stats", str(norm_stats), "--backend", "lerobot", "--tasks",
                       "PushCube-v1", "--tasks-dir", str(short_tasks), "--json", str(out))
    assert code == 1, text
    report = {f["check"]: f for f in json.loads(out.read_text())["findings"]}
    assert report["model"]["verdict"] == "FAIL" and "checkpoint holds a pi05 model" in report["model"]["detail"]
    assert report["norm stats widths"]["verdict"] == "FAIL"  # qpos is 9 wide, the stats 8
    assert "fix state_layout" in report["norm stats widths"]["fix"]
    assert report["cameras [PushCube-v1]"]["verdict"] == report["action dims [PushCube-v1]"]["verdict"] == "ok"
    assert {report[name]["verdict"] for name in ("sim vs dataset", "open-loop replay")} == {"skipped"}
    assert "FAIL" in text and "no --dataset" in text


def test_bad_input_is_one_line_before_anything_is_built(bench, tmp_path, spm_model, norm_stats):
    args = ["check", "--policy", "pi05", "--tokenizer", str(spm_model), "--norm-stats", str(norm_stats)]
    code, text = bench(*args, "--checkpoint", str(tmp_path / "missing"))
    assert code == 2 and "checkpoint folder not found" in text
    code, text = bench("check", "--policy", "expert")
    assert code == 2 and "bench check knows the pi and remote plugins" in " ".join(text.split())
    code, text = bench("check", "--policy", "remote-libero", "--dataset", str(tmp_path))
    assert code == 2 and "drop --dataset for a remote preset" in " ".join(text.split())
    code, text = bench(*args, "--checkpoint", str(tmp_path), "--backend", "lerobot", "--dataset", str(tmp_path / "no"))
    assert code == 2 and "dataset folder not found" in text


def test_a_remote_servers_actions_are_held_against_the_controller(bench, tmp_path, short_tasks):
    from test_remote import openpi_like_server

    seen = []

    def server(actions: np.ndarray):
        def policy(obs: dict) -> dict:
            seen.append(np.asarray(obs["observation/image"]).shape)
            return {"actions": actions}
        return policy

    args = ["check", "--policy", "remote-libero", "--tasks", "PushCube-v1", "--tasks-dir", str(short_tasks)]
    with openpi_like_server(server(np.full((10, 32), 2.0, np.float32))) as peer:  # LIBERO-scaled, padded to 32
        code, text = bench(*args, "--server", peer.url)
    assert code == 0 and "warn" in text and "the controller clips them" in " ".join(text.split()), text
    with openpi_like_server(server(np.zeros((10, 6), np.float32))) as peer:  # another controller's dimension
        code, text = bench(*args, "--server", peer.url)
    assert code == 1 and "pd_ee_delta_pose takes 7 dims" in " ".join(text.split()), text
    assert seen == [(224, 224, 3)] * 2  # one real observation per check


# --- against a dataset recorded by `bench record` ------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded(pushcube_recording) -> Path:
    """Three expert episodes of PushCube (pi05 layout, LeRobot v2.1, lossless PNG images; conftest's shared
    recording): one dataset for every check below."""
    return pushcube_recording


def check_report(bench, folder: Path, *args: str) -> tuple[int, dict]:
    out = folder / "check.json"
    code, text = bench("check", "--episodes-k", "3", "--json", str(out), *args)
    assert code in (0, 1), text
    return code, {f["check"]: f for f in json.loads(out.read_text())["findings"]}


def tiny_pi05(folder: Path, replacements: dict[str, str] | None = None) -> Path:
    return preset_copy(folder, "pi05", {'backend = "auto"': 'backend = "lerobot"\ntiny = true', **(replacements or {})})


def test_a_consistent_setup_passes_the_spec_gate_and_sim_but_a_random_model_not_the_replay(
        bench, tmp_path, recorded, spm_model, short_tasks):
    require("lerobot.policies.pi05.modeling_pi05", LEROBOT)
    code, report = check_report(bench, tmp_path, "--policy", str(tiny_pi05(tmp_path)), "--tokenizer", str(spm_model),
                                "--norm-stats", str(recorded / "norm_stats.json"), "--dataset", str(recorded),
                                "--tasks-dir", str(short_tasks))
    replay_checks = {"open-loop replay: first action", "open-loop replay: chunk"}
    assert {name: f["verdict"] for name, f in report.items() if name not in replay_checks} == {
        name: "ok" for name in report if name not in replay_checks}
    sims = [f for name, f in report.items() if name.startswith("sim vs dataset")]
    assert len(sims) == 2 and all(f["data"]["state_max_abs_diff"] == 0 for f in sims)
    assert all(f["data"]["base_0_rgb"]["psnr_db"] == float("inf") for f in sims)  # same seed, renderer, lossless
    # random weights do not beat the dataset's mean action: the verdict says so, and the run exits 1
    assert code == 1 and {report[name]["verdict"] for name in replay_checks} == {"FAIL"}
    assert report["open-loop replay: chunk"]["data"]["policy"]["pairs"] > 3


def test_swapped_cameras_another_state_layout_and_other_norm_stats_are_flagged(
        bench, tmp_path, recorded, spm_model, norm_stats, short_tasks):
    require("lerobot.policies.pi05.modeling_pi05", LEROBOT)
    preset = tiny_pi05(tmp_path, {'base_0_rgb = "base_camera"\nleft_wrist_0_rgb = "hand_camera"':
                                  'base_0_rgb = "hand_camera"\nleft_wrist_0_rgb = "base_camera"',
                                  'state_layout = "qpos8"': 'state_layout = "tcp_pos_quat_gripper"'})
    code, report = check_report(bench, tmp_path, "--policy", str(preset), "--tokenizer", str(spm_model),
                                "--norm-stats", str(norm_stats), "--dataset", str(recorded), "--tasks-dir",
                                str(short_tasks))
    assert code == 1
    assert report["dataset cameras"]["verdict"] == "FAIL"
    assert "base_0_rgb recorded from base_camera, the preset reads hand_camera" in report["dataset cameras"]["detail"]
    assert report["state"]["verdict"] == "FAIL" and "recorded with state layout qpos8" in report["state"]["detail"]
    assert report["norm stats: state"]["verdict"] == report["norm stats: actions"]["verdict"] == "FAIL"
    sims = [f for name, f in report.items() if name.startswith("sim vs dataset")]
    assert sims and all(f["verdict"] == "FAIL" and f["data"]["base_0_rgb"]["psnr_db"] < 25 for f in sims)
    assert report["open-loop replay"]["verdict"] == "FAIL"  # tcp_pos_quat_gripper needs the TCP pose qpos8 lacks
    assert "reads simulator values" in report["open-loop replay"]["detail"]


def test_scaled_actions_another_image_size_fps_and_prompt_are_flagged(bench, tmp_path, recorded, spm_model,
                                                                      short_tasks):
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    require("lerobot.policies.pi05.modeling_pi05", LEROBOT)
    scaled = tmp_path / "scaled"
    shutil.copytree(recorded, scaled)
    for path in sorted((scaled / "data").rglob("*.parquet")):  # actions x 2: another controller's scale
        table = pq.read_table(path)
        actions = np.stack(table.column("action").to_numpy(zero_copy_only=False)) * 2
        column = pa.FixedSizeListArray.from_arrays(pa.array(actions.astype(np.float32).reshape(-1)), 7)
        pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", column), path)
    tasks = tmp_path / "tasks"
    shutil.copytree(short_tasks, tasks)
    spec = tasks / "PushCube-v1.toml"
    spec.write_text(spec.read_text().replace("Push and move a cube", "Shove a cube") +
                    "image_size = [256, 256]\ncontrol_freq = 10\n")
    code, report = check_report(bench, tmp_path, "--policy", str(tiny_pi05(tmp_path)), "--tokenizer", str(spm_model),
                                "--norm-stats", str(recorded / "norm_stats.json"), "--dataset", str(scaled),
                                "--tasks-dir", str(tasks))
    assert code == 1
    assert report["actions"]["verdict"] == "FAIL" and "outside pd_ee_delta_pose's bounds" in report["actions"]["detail"]
    assert report["norm stats: actions"]["verdict"] == "FAIL" and report["norm stats: state"]["verdict"] == "ok"
    assert report["image size"]["verdict"] == "warn" and "renders 256x256" in report["image size"]["detail"]
    assert report["fps"]["verdict"] == "FAIL" and report["prompt [PushCube-v1]"]["verdict"] == "FAIL"
    assert report["dataset cameras"]["verdict"] == report["state"]["verdict"] == "ok"
