"""Policies that fail on purpose, for the fault-injection tests (loaded as `faulty_policies:FaultyRandom`)."""

import os
import signal
from pathlib import Path

import numpy as np

from bench.policies import EpisodeContext
from bench.policies.baselines import RandomPolicy


class FaultyRandom(RandomPolicy):
    """The random baseline, except that it raises whenever a batch holds an episode of `raise_on` and returns NaN
    actions for the episodes of `nan_on`. Raising happens before any random draw, so the other episodes' actions
    stay exactly those of the plain random policy."""

    name = "faulty"
    overlap = True  # runs in two lanes, so the fault tests also check that lanes change no result

    def __init__(self, num_slots: int, seed: int = 0, raise_on: tuple = (), nan_on: tuple = ()):
        super().__init__(num_slots, seed)
        self.raise_on, self.nan_on = set(raise_on), set(nan_on)
        self._episodes = [-1] * num_slots

    def reset(self, slot: int, context: EpisodeContext) -> None:
        super().reset(slot, context)
        self._episodes[slot] = context.episode.index

    def act(self, obs, slots):
        if any(self._episodes[s] in self.raise_on for s in slots):
            raise RuntimeError("injected failure")
        actions = super().act(obs, slots)
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
