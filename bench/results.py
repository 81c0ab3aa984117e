"""Run folders on disk: manifest.json, episodes appended durably as they end, a Parquet table at the end.

results/<run-id>/
  manifest.json      what produced the run (config, task specs, policy, versions, host) and its status
  episodes.jsonl     one JSON record per finished episode, flushed and fsynced before it is reported
  .lock              held (flock) by the process writing the run, so two never write one run folder
  episodes.parquet   the same records as a table, written when the run ends
  leaderboard.md/csv the per-task table
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.errors import BenchError

MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"
EPISODES_PARQUET = "episodes.parquet"


def new_run_id(policy: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{policy}-{os.getpid()}"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file and rename over the target, so readers never see half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        try:
            json.dump(data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            os.unlink(f.name)
            raise
    os.replace(f.name, path)


def probe_writable(root: Path) -> None:
    """Fails before anything starts if the output folder could not be created or written, by really creating and
    removing a folder in its nearest existing ancestor (`os.access` says yes for /proc, and for read-only mounts
    to root); leaves nothing behind (the run folder appears with the run's first record)."""
    existing = root.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file"
    else:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".bench-probe-", dir=existing))
            return
        except OSError as e:
            problem = f"a folder cannot be created in {existing} ({e.strerror})"
    raise BenchError(f"cannot write results to {root}: {problem}; pass --output with a writable folder")


class RunWriter:
    """Owns one run folder; every finished episode is on disk before `append` returns.

    `resume=True` reopens a run folder that an interrupted or killed run left: a torn last record is cut off,
    the finished records are kept and new ones are appended after them.
    """

    def __init__(self, run_dir: Path, manifest: dict, resume: bool = False):
        try:
            run_dir.mkdir(parents=True, exist_ok=resume)
        except FileExistsError:
            raise BenchError(f"{run_dir} already exists: choose another --run-id") from None
        self.run_dir = run_dir
        self._lock = (run_dir / ".lock").open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise BenchError(f"{run_dir} is being written by another bench process; wait for it to end") from None
        self.records: list[dict] = []
        if resume:
            _cut_torn_tail(run_dir / EPISODES)
            self.records = read_episodes(run_dir).to_dict("records")
        resumed = [*manifest.get("resumed", []), datetime.now(timezone.utc).isoformat()] if resume else []
        self.manifest = {**manifest, "status": "running", **({"resumed": resumed} if resume else {})}
        write_json_atomic(run_dir / MANIFEST, self.manifest)
        self._episodes = (run_dir / EPISODES).open("a")

    def append(self, record: dict) -> None:
        """Writes one record durably; if the disk refuses (full, gone read-only), cuts the file back to the records
        before it, so that episodes.jsonl stays valid, and raises the OSError."""
        end = self._episodes.tell()
        try:
            self._episodes.write(json.dumps(record, default=str) + "\n")
            self._episodes.flush()
            os.fsync(self._episodes.fileno())
        except OSError:
            self._episodes = _reopen_at(self._episodes, end)
            raise
        self.records.append(record)

    def finish(self, status: str, **extra) -> pd.DataFrame:
        self._episodes.close()
        table = pd.DataFrame.from_records(self.records)
        table.to_parquet(self.run_dir / EPISODES_PARQUET, index=False)
        self.manifest.update(status=status, finished=datetime.now(timezone.utc).isoformat(), **extra)
        write_json_atomic(self.run_dir / MANIFEST, self.manifest)
        self._lock.close()
        return table


def _reopen_at(file, end: int):
    """The file cut back to `end` bytes, reopened for appending (its buffer may still hold the refused bytes)."""
    path = file.name
    try:
        file.close()
    except OSError:
        pass  # closing flushes the refused bytes again, and fails again: they are dropped
    os.truncate(path, end)
    return open(path, "a")


def _cut_torn_tail(path: Path) -> None:
    """Drops a last line without its newline (the record being written when the process was killed)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def read_episodes(run_dir: Path) -> pd.DataFrame:
    """Episode records of a run; a torn last line (a run killed mid-write, or still writing) is skipped."""
    records = []
    path = run_dir / EPISODES
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame.from_records(records)


def ok_mask(episodes: pd.DataFrame) -> pd.Series:
    """Episodes that ended normally. `error` records (policy exception, invalid actions, an env lost twice) are
    neither successes nor failures: tables leave them out of the rates and count them apart."""
    if "status" not in episodes:  # runs written before errors were recorded
        return pd.Series(True, index=episodes.index)
    return episodes["status"].fillna("ok").eq("ok")


def read_manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / MANIFEST).read_text())


def find_runs(root: Path) -> list[Path]:
    """Run folders under `root` (or `root` itself if it is one)."""
    if (root / MANIFEST).is_file():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))
