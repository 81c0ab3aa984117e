"""Run folders read into memory, each once: `bench compare` loads two, `bench leaderboard` and `bench report` every
run under a folder, and everything they show is computed from these objects, never by reading the folder again."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.identity import PolicyIdentity, policy_identity, policy_names
from bench.results import MANIFEST, find_runs, read_episodes, read_manifest


@dataclass(frozen=True)
class Run:
    path: Path
    manifest: dict
    episodes: pd.DataFrame

    @cached_property
    def policy(self) -> PolicyIdentity:
        return policy_identity(self.manifest)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def created(self) -> str:
        """When the run started (ISO time, so strings sort in time order); "" if the manifest does not say."""
        return str(self.manifest.get("created") or "")

    @property
    def label(self) -> str:
        """`<run id> (<policy name>)`, the policy named as `bench.identity` names it on its own."""
        return f"{self.run_id} ({policy_names([self.policy])[self.policy]})"


def load_run(path: Path) -> Run:
    """A run folder with at least one finished episode, or a BenchError that says what to pass instead."""
    if not path.exists():
        raise BenchError(f"{path} does not exist: pass a run folder such as results/<run-id>")
    if not (path / MANIFEST).is_file():
        inside = [p.name for p in find_runs(path)] if path.is_dir() else []
        hint = f"; run folders inside it: {', '.join(inside[:5])}" if inside else ""
        raise BenchError(f"{path} is not a run folder (no manifest.json): pass a folder written by `bench run`{hint}")
    run = _read(path)
    if run.episodes.empty:
        raise BenchError(f"{path} has no finished episodes: nothing to compare")
    return run


def _read(path: Path) -> Run:
    try:
        manifest = read_manifest(path)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        return Run(path, manifest, read_episodes(path))
    except ValueError as e:  # JSON or UTF-8
        raise BenchError(f"{path / MANIFEST} is damaged ({e}): rerun the run, or restore the file") from None
    except OSError as e:
        raise BenchError(f"cannot read {e.filename}: {e.strerror}") from None


@dataclass(frozen=True)
class RunSet:
    """The runs under a folder that have finished episodes, and those that could not be read, with why."""

    root: Path
    runs: list[Run]
    unreadable: list[tuple[Path, str]]


def read_runs(root: Path) -> RunSet:
    """Every run folder under `root` (or `root` itself), read once. A damaged run is set aside with the reason,
    so one bad folder does not hide the others; a run with no finished episode yet is left out."""
    runs, unreadable = [], []
    for path in find_runs(root):
        try:
            run = _read(path)
        except BenchError as e:
            unreadable.append((path, str(e)))
            continue
        if not run.episodes.empty:
            runs.append(run)
    return RunSet(root, runs, unreadable)
