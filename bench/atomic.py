"""Files replaced whole or not at all: written under a unique temporary name beside the target, fsynced, then
renamed over it, so a reader (a resumed run, `bench compare` during a run, a LeRobot loader) never sees half a file
and a crash leaves the old file or the new one. Run records (results.py) and datasets (datasets/v21.py) share it."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary path beside `path` for the block to write (unique, so concurrent writers do not share
    it); renamed over `path` only if the block succeeds, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: dict, indent: int = 2) -> None:
    write_text(path, json.dumps(data, indent=indent, default=str))
