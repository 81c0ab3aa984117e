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
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.atomic import write_json
from bench.errors import BenchError

MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"
EPISODES_PARQUET = "episodes.parquet"


def new_run_id(policy: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{policy}-{os.getpid()}"


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
        write_json(run_dir / MANIFEST, self.manifest)
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
        write_json(self.run_dir / MANIFEST, self.manifest)
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


KEY_COLUMNS = ("task", "episode")
"""An episode of a run: its task and index (which, with the run seed, pin its initial state)."""
RESULT_COLUMNS = ("seed", "status", "error", "success_once", "success_at_end", "first_success_step", "steps",
                  "return")
"""What an episode scored: equal in two runs of the same policy on the same evaluation contract."""
RUN_COLUMNS = ("run_id", "policy", "wall_time_s", "sim_time_s", "policy_time_s", "task_setup_s", "wave_size", "lanes",
               "retry", "video")
"""How and where an episode ran, not what it scored: the run and preset it belongs to, timings (of its wave; of
building its task's environments, `task_setup_s`), the wave it shared
(`wave_size`, `lanes`: --num-envs and scheduling), whether its env worker died first (`retry`: the episode is
replayed from its start) and its video file (present with --video). They may differ between runs of the same
episodes."""


class CorruptEpisodes(BenchError):
    """A record of episodes.jsonl that is not valid, other than a torn last line: the file was damaged or edited."""


def read_episodes(run_dir: Path) -> pd.DataFrame:
    """Episode records of a run.

    A record is committed when its newline is on disk (`RunWriter.append` writes both in one call), so a last line
    without its newline (a run killed mid-write, or still writing) is skipped, as `--resume` cuts it off. Any other
    line that is not a JSON object with a task and an episode index raises CorruptEpisodes naming the file and line
    and how to repair it: records are never dropped silently. Blank lines hold no record and are skipped.
    """
    path = run_dir / EPISODES
    if not path.is_file():
        return pd.DataFrame()
    lines = path.read_bytes().split(b"\n")
    lines.pop()  # b"" after a final newline, else the torn last line
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problem = f"not valid JSON ({e.msg} at column {e.colno})"
        except ValueError:  # bytes that are not UTF-8
            problem = "not UTF-8 text"
        else:
            if isinstance(record, dict) and all(key in record for key in KEY_COLUMNS):
                records.append(record)
                continue
            problem = ("a record without its task and episode index" if isinstance(record, dict) else
                       f"a JSON {type(record).__name__}, not a record")
        raise CorruptEpisodes(f"{path} line {number} is {problem}: remove or fix line {number} of {path} (the "
                              "run's other records are intact), then rerun")
    return pd.DataFrame.from_records(records)


def same_episode_results(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """What differs between the results of two tables of episode records, one line per difference ([]: the same).

    Episodes are matched by KEY_COLUMNS; an episode in only one table, or recorded twice in one, is a difference.
    Every column but RUN_COLUMNS is compared, RESULT_COLUMNS and any column a later bench adds (so a new column is
    held equal until someone decides it may differ). Missing values (None, NaN) equal each other; numbers are
    compared exactly (the same machine and package versions give identical results).
    """
    if a.empty or b.empty:
        return [] if a.empty and b.empty else [f"{'A' if a.empty else 'B'} has no episodes"]
    differences = []
    compared = {}
    for name, table in (("A", a), ("B", b)):
        twice = table[table.duplicated(list(KEY_COLUMNS))]
        differences += [f"{t} episode {e}: recorded twice in {name}" for t, e in twice[list(KEY_COLUMNS)].to_numpy()]
        compared[name] = [c for c in table.columns if c not in RUN_COLUMNS and c not in KEY_COLUMNS]
    for name, other in (("A", "B"), ("B", "A")):
        differences += [f"column {c} only in {name}" for c in compared[name] if c not in compared[other]]
    common = [c for c in compared["A"] if c in compared["B"]]
    pairs = a.drop_duplicates(list(KEY_COLUMNS)).merge(b.drop_duplicates(list(KEY_COLUMNS)), how="outer",
                                                       on=list(KEY_COLUMNS), suffixes=("_a", "_b"), indicator=True)
    for row in pairs.sort_values(list(KEY_COLUMNS)).to_dict("records"):
        where = f"{row['task']} episode {row['episode']}"
        if row["_merge"] != "both":
            differences.append(f"{where}: only in {'A' if row['_merge'] == 'left_only' else 'B'}")
            continue
        differences += [f"{where}: {c} {row[f'{c}_a']!r} != {row[f'{c}_b']!r}" for c in common
                        if not _same(row[f"{c}_a"], row[f"{c}_b"])]
    return differences


def _same(x, y) -> bool:
    missing_x, missing_y = (v is None or (isinstance(v, float) and math.isnan(v)) for v in (x, y))
    return missing_x and missing_y or (not missing_x and not missing_y and x == y)


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
