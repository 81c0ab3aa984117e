"""User-facing errors: one line that names the fix. The CLI prints it and exits with `exit_code`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """Bad input or an unusable machine; the message tells the user what to do."""

    exit_code = 2


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> BenchError:
    """An error for an unknown task/policy/suite name that lists the closest known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    return BenchError(f"unknown {kind} '{name}': {suggestion}known: {', '.join(known)}{hint}")
