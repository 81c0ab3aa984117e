"""What `bench check` reports: one finding per check (verdict, detail, the fix), as a table and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

OK, WARN, FAIL, SKIPPED = "ok", "warn", "FAIL", "skipped"
VERDICTS = (OK, WARN, FAIL, SKIPPED)


@dataclass(frozen=True)
class Finding:
    """One check's outcome. `fix` says in one line what to change when the verdict is not ok; `data` holds the
    numbers behind the detail (per-dimension errors, PSNRs) for --json."""

    check: str
    verdict: str
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}: one of {VERDICTS}")


def ok(check: str, detail: str, **data) -> Finding:
    return Finding(check, OK, detail, data=data)


def warn(check: str, detail: str, fix: str, **data) -> Finding:
    return Finding(check, WARN, detail, fix, data)


def fail(check: str, detail: str, fix: str, **data) -> Finding:
    return Finding(check, FAIL, detail, fix, data)


def skipped(check: str, why: str) -> Finding:
    return Finding(check, SKIPPED, why)


def graded(check: str, verdict: str, detail: str, fix: str, **data) -> Finding:
    """A finding whose verdict was computed: the fix is kept only when there is something to fix."""
    return Finding(check, verdict, detail, fix if verdict in (WARN, FAIL) else "", data)


def failed(findings: list[Finding]) -> bool:
    return any(f.verdict == FAIL for f in findings)


def to_json(findings: list[Finding], context: dict) -> dict:
    """--json: what was checked (`context`: preset, checkpoint, dataset, renderers) and every finding."""
    return {**context, "failed": failed(findings), "findings": [asdict(f) for f in findings]}
