"""Cameras render only on the steps someone looks at (issue 14): what is observed is pixel-identical to rendering
every step, and no episode result changes."""

import dataclasses
import hashlib

import numpy as np
import pytest

from bench.adapters import ActionChunker
from bench.engine import run_wave
from bench.envs import CpuWorkerEnvs, is_camera_key
from bench.policies import EpisodeContext, Policy
from bench.tasks import episodes_for, load_suite

STEPS = 12


def _spec(task_id: str):
    return dataclasses.replace(load_suite().tasks[task_id], max_steps=STEPS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("task_id", ["PickCube-v1", "PegInsertionSide-v1"])
def test_a_step_without_cameras_changes_nothing_but_the_pictures(task_id):
    """Two slots, one rendering every step and one every third: where both render, every key is bit-identical;
    every step, the state keys, reward and success are; an unobserved row says so and carries no picture."""
    spec = _spec(task_id)
    (episode,) = episodes_for(task_id, 0, 1)
    rng = np.random.default_rng(0)
    with CpuWorkerEnvs(2) as envs:
        low, high = envs.start_task(spec)
        actions = rng.uniform(low, high, (STEPS, 1, len(low))).astype(np.float32)
        first = envs.reset([episode.seed] * 2, observe=[True, False])
        camera_keys = [k for k in first if is_camera_key(k)]
        assert camera_keys and all(not first[k][1].any() for k in camera_keys if k.endswith("/rgb"))
        for key in first:
            if not is_camera_key(key):
                np.testing.assert_array_equal(first[key][0], first[key][1], err_msg=key)
        for step, action in enumerate(actions, start=1):
            seen = step % 3 == 0
            out = envs.step(np.repeat(action, 2, axis=0), observe=[True, seen])
            assert out.observed.tolist() == [True, seen]
            assert out.reward[0] == out.reward[1] and out.success[0] == out.success[1]
            for key, value in out.obs.items():
                if seen or not is_camera_key(key):
                    np.testing.assert_array_equal(value[0], value[1], err_msg=f"{key} at step {step}")
                elif key.endswith("/rgb"):
                    assert not value[1].any(), f"{key} at step {step}: a picture nobody asked for"


class CameraHash(Policy):
    """Reads both cameras and acts on their pixels (so any stale or changed picture changes the episode); keeps
    a digest of every picture it was given."""

    name = "camera-hash"

    def __init__(self, num_slots: int, seed: int = 0):
        self.seen: list[tuple[int, str]] = []
        self._bounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def describe(self) -> dict:
        return {"name": self.name}

    def reset(self, slot: int, context: EpisodeContext) -> None:
        self._bounds[slot] = (context.action_low, context.action_high)

    def act(self, obs, slots):
        chunks = []
        for row, slot in enumerate(slots):
            pixels = np.concatenate([obs[k][row].ravel() for k in sorted(obs) if k.endswith("/rgb")])
            assert pixels.any(), "a policy was given a blank picture"
            digest = hashlib.sha256(pixels.tobytes()).digest()
            self.seen.append((int(slot), digest.hex()))
            low, high = self._bounds[int(slot)]
            u = np.frombuffer(digest, np.uint8)[: 4 * len(low)].reshape(4, len(low)) / 255.0
            chunks.append(low + u * (high - low))
        return np.stack(chunks).astype(np.float32)


class EverySink:
    """A recording's view of the wave (`bench record`): it sees every frame, so every step renders."""

    def __init__(self):
        self.frames = 0

    def start(self, task, wave, bounds):
        pass

    def add(self, slots, obs, actions):
        self.frames += len(slots)


@pytest.mark.timeout(600)
def test_a_camera_reading_policy_sees_the_same_pictures_and_scores_the_same():
    """A wave run with cameras on demand (rendered on chunk steps only, replanning every 3 steps) against the same
    wave rendered every step: the policy is given the same pictures at the same steps, and the records agree."""
    spec = _spec("PickCube-v1")
    wave = episodes_for(spec.id, 0, 2)
    runs = []
    with CpuWorkerEnvs(2) as envs:
        bounds = envs.start_task(spec)
        for sink in (None, EverySink()):
            policy = CameraHash(2)
            result = run_wave(envs, policy, ActionChunker(2, 3, len(bounds[0])), spec, wave, bounds, set(),
                              lanes=2, sink=sink)
            runs.append((policy.seen, result.records))
    (seen_on_demand, records_on_demand), (seen_every_step, records_every_step) = runs
    assert len(seen_on_demand) == 2 * 4  # 12 steps, a chunk every 3: 4 queries per slot
    assert sorted(seen_on_demand) == sorted(seen_every_step)
    timing = {"wall_time_s", "sim_time_s", "policy_time_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in records_on_demand] == \
           [{k: v for k, v in r.items() if k not in timing} for r in records_every_step]


class ObservedLog(CpuWorkerEnvs):
    """The real CPU workers, keeping what they report of each reset and step: which rows carry pictures."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pictures: list[bool] = []

    def reset(self, seeds, observe=None):
        obs = super().reset(seeds, observe=observe)
        self.pictures += [bool(obs[k][row].any()) for k in obs if k.endswith("/rgb") for row in range(len(seeds))]
        return obs

    def step_wait(self, slots):
        out = super().step_wait(slots)
        self.pictures += out.observed.tolist()
        return out


@pytest.mark.timeout(600)
def test_a_policy_that_reads_no_camera_has_nothing_rendered():
    """A wave of the random policy (reads_cameras = False, as expert and zero): no reset and no step of either slot
    renders a picture; the same envs with a camera-reading policy do, on its chunk steps."""
    from bench.policies.baselines import RandomPolicy

    spec = _spec("PickCube-v1")
    wave = episodes_for(spec.id, 0, 2)
    with ObservedLog(2) as envs:
        bounds = envs.start_task(spec)
        result = run_wave(envs, RandomPolicy(2), ActionChunker(2, 3, len(bounds[0])), spec, wave, bounds, set(),
                          lanes=2)
        assert [r["steps"] for r in result.records] == [STEPS, STEPS]
        assert envs.pictures and not any(envs.pictures)
        run_wave(envs, CameraHash(2), ActionChunker(2, 3, len(bounds[0])), spec, wave, bounds, set(), lanes=2)
        assert any(envs.pictures)
