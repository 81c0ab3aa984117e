"""Policies that fail on purpose, for the fault-injection tests (loaded as `faulty_policies:FaultyRandom`)."""

import os
import resource
import signal
from pathlib import Path

import numpy as np

from bench.policies import EpisodeContext
from bench.policies.baselines import RandomPolicy


class FaultyRandom(RandomPolicy):
    """The random baseline, except that it raises whenever a batch holds an episode of `raise_on` and returns NaN
    actions for the episodes of `nan_on`. It raises before any random draw, or with `draw_first` after drawing the
    whole batch's actions (a model that fails late, its per-episode random state already advanced)."""

    name = "faulty"
    overlap = True  # runs in two lanes, so the fault tests also check that lanes change no result

    def __init__(self, num_slots: int, seed: int = 0, raise_on: tuple = (), nan_on: tuple = (),
                 draw_first: bool = False, lanes: int = 2):
        super().__init__(num_slots, seed)
        self.raise_on, self.nan_on, self.draw_first = set(raise_on), set(nan_on), draw_first
        self.overlap = lanes == 2
        self._episodes = [-1] * num_slots

    def reset(self, slot: int, context: EpisodeContext) -> None:
        super().reset(slot, context)
        self._episodes[slot] = context.episode.index

    def act(self, obs, slots):
        failing = any(self._episodes[s] in self.raise_on for s in slots)
        if failing and not self.draw_first:
            raise RuntimeError("injected failure")
        actions = super().act(obs, slots)
        if failing:
            raise RuntimeError("injected failure")
        actions[[self._episodes[s] in self.nan_on for s in slots]] = np.nan
        return actions


class WorkerKiller(RandomPolicy):
    """The random baseline that, on its `kill_at`-th call, sends `signal_name` (SIGKILL: a worker dying; SIGSTOP: a
    worker hanging without dying) to one CPU env worker of this process, mid-wave, at a moment the test controls."""

    name = "worker-killer"
    overlap = True

    def __init__(self, num_slots: int, seed: int = 0, kill_at: int = 2, signal_name: str = "SIGKILL"):
        super().__init__(num_slots, seed)
        self.kill_at, self.calls, self.signal = kill_at, 0, signal.Signals[signal_name]

    def act(self, obs, slots):
        import psutil

        self.calls += 1
        if self.calls == self.kill_at:
            workers = [p for p in psutil.Process().children(recursive=True)  # env workers: the forkserver's children
                       if "forkserver" in " ".join(p.parent().cmdline())]
            max(workers, key=lambda p: p.create_time()).send_signal(self.signal)
        return super().act(obs, slots)


class ShardKiller(RandomPolicy):
    """The random baseline that SIGKILLs its own process at its `kill_at`-th call, once per `marker` file: a Ray
    shard's worker dying mid-shard, after which Ray runs the shard again."""

    name = "shard-killer"

    def __init__(self, num_slots: int, seed: int = 0, kill_at: int = 3, marker: str = ""):
        super().__init__(num_slots, seed)
        self.kill_at, self.marker, self.calls = kill_at, Path(marker), 0

    def act(self, obs, slots):
        self.calls += 1
        if self.calls == self.kill_at and not self.marker.exists():
            self.marker.write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().act(obs, slots)


class FaultyWithoutSnapshots(FaultyRandom):
    """FaultyRandom as a plugin that does not implement `Policy.snapshot`: its failed batches cannot be retried."""

    def snapshot(self, slot: int):
        return None


class DiskRefuser(RandomPolicy):
    """The random baseline that, at its `refuse_at`-th call, stops its own process from growing `path` (the run's
    episodes.jsonl) any further (RLIMIT_FSIZE; writes then fail with EFBIG, as they fail with ENOSPC on a full
    disk): the run's disk refusing writes mid-run. Run it in a process of its own."""

    name = "disk-refuser"

    def __init__(self, num_slots: int, seed: int = 0, refuse_at: int = 60, path: str = ""):
        super().__init__(num_slots, seed)
        self.refuse_at, self.path, self.calls = refuse_at, Path(path), 0
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process on the refused write

    def act(self, obs, slots):  # on the runner's policy thread
        self.calls += 1
        if self.calls == self.refuse_at:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.path.stat().st_size, resource.RLIM_INFINITY))
        return super().act(obs, slots)
