"""Command line: `bench run | record | compare | tasks | policies | leaderboard | report | doctor | check` (tyro
subcommands)."""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Annotated

import pandas as pd
import tyro
from rich.console import Console

from bench.check.findings import failed
from bench.check.findings import to_json as findings_json
from bench.check.run import CheckConfig, check
from bench.compare import compare, load_run, print_comparison, to_json, to_markdown_report
from bench.errors import BenchError
from bench.html_report import REPORT, policy_comparisons, robustness_sections, write_report
from bench.doctor import diagnose
from bench.policies import DEFAULT_PRESETS_DIR, plugins, presets, resolve_preset
from bench.report import leaderboard_markdown, leaderboard_of, print_leaderboard, print_notices, print_table
from bench.runs import read_runs
from bench.config import RunConfig
from bench.record import RecordConfig, record
from bench.runner import run_repeats
from bench.tasks import DEFAULT_TASKS_DIR, load_suite

BASELINE_COMPARISON = "baseline-comparison.md"  # written into the run folder by `bench run --baseline`
console = Console(width=None if sys.stdout.isatty() else 160)  # logs and CI: do not cut tables at 80


def run_command(config: Annotated[RunConfig, tyro.conf.arg(name="")]) -> int:
    """Evaluate a policy on tasks; results go to <output>/<run-id>/. With --baseline, compare with a stored run."""
    config.validate()
    baseline = load_run(config.baseline) if config.baseline is not None else None  # bad paths fail before the run
    outcomes = run_repeats(config, console)
    if not all(outcome.status == "completed" for outcome in outcomes):
        return 1
    if baseline is None:
        return 0
    comparison = compare(baseline, load_run(outcomes[0].run_dir), config.margin)
    print_comparison(comparison, console)
    _write(outcomes[0].run_dir / BASELINE_COMPARISON, to_markdown_report(comparison))
    if comparison.regressed:
        console.print(f"[red]regression[/] against {config.baseline}" if config.fail_on_regression else
                      "[yellow]regression[/] against the baseline (add --fail-on-regression to fail on it)")
    return 1 if comparison.regressed and config.fail_on_regression else 0


def record_command(config: Annotated[RecordConfig, tyro.conf.arg(name="")]) -> int:
    """Roll a policy (default: the scripted expert) out on pinned episodes of their own seed range and write a LeRobot
    dataset (v3.0 or v2.1, lerobot or openpi keys) with openpi and lerobot norm stats, for fine-tuning."""
    record(config, console)
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as e:
        raise BenchError(f"cannot write {path}: {e.strerror}; pass a path in a writable folder") from e


def compare_command(a: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="A")],
                    b: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="B")],
                    margin: float = 0.0, allow_mismatch: bool = False,
                    json_out: Annotated[Path | None, tyro.conf.arg(name="json")] = None,
                    markdown: Path | None = None) -> int:
    """Compare run B (candidate) with run A (baseline) episode by episode; exit 1 if B is significantly worse.

    Args:
        a: Baseline run folder (results/<run-id>).
        b: Candidate run folder, evaluated on the same episodes.
        margin: Smallest difference in success rate that counts as better or worse (0.05 = 5 points).
        allow_mismatch: Compare runs whose evaluation settings differ; the differences are printed first.
        json_out: Also write the comparison as JSON to this file.
        markdown: Also write the comparison as Markdown to this file.
    """
    comparison = compare(load_run(a), load_run(b), margin, allow_mismatch)
    print_comparison(comparison, console)
    if json_out:
        _write(json_out, json.dumps(to_json(comparison), indent=2))
    if markdown:
        _write(markdown, to_markdown_report(comparison))
    return 1 if comparison.regressed else 0


def tasks_command(tasks_dir: Path = DEFAULT_TASKS_DIR) -> int:
    """List the task suite: suites, and each task's budget, robot, control mode and instruction."""
    suite = load_suite(tasks_dir)
    console.print(f"suite version {suite.version}")
    for name, ids in suite.suites.items():
        episodes = f" ({suite.suite_episodes[name]} episodes each)" if name in suite.suite_episodes else ""
        console.print(f"  [bold]{name}[/]: {', '.join(ids)}{episodes}")
    columns = ["id", "max_steps", "robot", "control_mode", "control_freq", "image_size", "instruction"]
    rows = [{c: getattr(t, c) for c in columns} for t in suite.tasks.values() if not t.variant]
    print_table(pd.DataFrame(rows, columns=columns), "tasks", console)
    variants: dict[str, list] = {}
    for task in (t for t in suite.tasks.values() if t.variant):
        variants.setdefault(task.variant, [task.perturbation, []])[1].append(task.base_id)
    if variants:
        rows = [{"variant": name, "axis": p.axis, "version": p.version, "tasks": ", ".join(ids)}
                for name, (p, ids) in variants.items()]
        print_table(pd.DataFrame(rows), "robustness variants (run as <task>@<variant>; tasks/robustness.toml)", console)
    return 0


def policies_command(presets_dir: Path = DEFAULT_PRESETS_DIR) -> int:
    """List installed policy plugins (entry points `bench.policies`) and the presets in policies/."""
    installed = plugins()
    rows = [{"name": name, "kind": "plugin", "plugin": ep.value, "description": ""} for name, ep in installed.items()]
    rows += [{"name": p.name, "kind": "preset", "plugin": p.plugin, "description": p.description}
             for p in presets(presets_dir).values()]
    print_table(pd.DataFrame(rows, columns=["name", "kind", "plugin", "description"]), "policies", console)
    return 0


def leaderboard_command(root: Annotated[Path, tyro.conf.Positional] = Path("results"),
                        markdown: Path | None = None) -> int:
    """Aggregate the runs under ROOT into a policy x task table (success_once, 95% Wilson interval), one per
    evaluation contract."""
    if not root.exists():
        raise BenchError(f"{root} does not exist: pass the folder that holds your run folders")
    board = leaderboard_of(read_runs(root))
    print_leaderboard(board, console)  # unreadable runs and ambiguous labels first, then a table per contract
    if board.empty:
        raise BenchError(f"no finished episodes under {root}: run `bench run` first")
    if markdown:
        markdown.write_text(leaderboard_markdown(board))
    return 0


def report_command(root: Annotated[Path, tyro.conf.Positional] = Path("results"), out: Path | None = None,
                   open_page: Annotated[bool, tyro.conf.arg(name="open")] = False) -> int:
    """Write one static HTML page for the runs under ROOT: leaderboard, plots per task, episode videos.

    Args:
        root: Folder holding run folders (or one run folder).
        out: Where to write the page (default ROOT/report.html); videos are linked relative to it.
        open_page: Open the page in the web browser.
    """
    if not root.exists():
        raise BenchError(f"{root} does not exist: pass the folder that holds your run folders")
    board = leaderboard_of(read_runs(root))  # every run folder read once; the page is built from this
    print_notices(board, console)  # unreadable runs, ambiguous labels, several evaluation contracts
    if board.empty:
        raise BenchError(f"no finished episodes under {root}: run `bench run` first")
    robust = robustness_sections(board)
    for section in robust:
        print_table(section.table, section.title, console)
        for line in section.notes:
            console.print(line)
    try:
        page = write_report(board, out or root / REPORT, [*policy_comparisons(board), *robust])
    except OSError as e:
        raise BenchError(f"cannot write the report to {e.filename}: {e.strerror}; pass --out with a writable path") from e
    console.print(f"report: {page}")
    if open_page:
        webbrowser.open(page.resolve().as_uri())
    return 0


def doctor_command(policy: str | None = None, presets_dir: Path = DEFAULT_PRESETS_DIR) -> int:
    """What this machine can run (Vulkan rendering, GPU physics, CUDA for torch and JAX, memory) and the --num-envs
    to start from. Exits 1 when rendering, which every run needs, does not work.

    Args:
        policy: Policy preset to size --num-envs for (e.g. pi05); default: no policy limit.
    """
    model = None
    if policy is not None:
        preset = resolve_preset(policy, presets_dir)
        model = preset.params.get("model") if preset.plugin == "pi" else None
    checks, recommended = diagnose(model)
    marks = {True: "[green]ok[/]", False: "[red]no[/]", None: "-"}
    rows = [(c.name, marks[c.ok], c.detail) for c in checks]
    print_table(pd.DataFrame(rows, columns=["check", "", "detail"]), "bench doctor", console)
    console.print(f"recommended: [bold]{recommended.flags()}[/]{f' for {policy}' if policy else ''}: "
                  f"{recommended.why}", highlight=False)
    return 0 if checks[0].ok else 1


def check_command(policy: str, checkpoint: str | None = None, tokenizer: str | None = None,
                  norm_stats: str | None = None, backend: str | None = None, server: str | None = None,
                  dataset: Path | None = None, tasks: str | None = None, episodes_k: int = 16, seed: int = 0,
                  json_out: Annotated[Path | None, tyro.conf.arg(name="json")] = None,
                  tasks_dir: Path = DEFAULT_TASKS_DIR, presets_dir: Path = DEFAULT_PRESETS_DIR) -> int:
    """Explain a train/eval mismatch before an evaluation: preset vs checkpoint vs task (vs a training dataset:
    spec gate, norm stats, sim vs dataset, open-loop replay). Exits 1 when a check fails.

    Args:
        policy: Preset name or file (pi0, pi05, a copy; remote presets: the server's actions).
        checkpoint: Checkpoint folder (overrides the preset's).
        tokenizer: PaliGemma SentencePiece model.
        norm_stats: Norm stats file overriding the checkpoint's.
        backend: auto, lerobot or openpi.
        server: Policy server address (remote presets).
        dataset: LeRobot dataset (v2.1 or v3.0) the checkpoint was trained on.
        tasks: Tasks to check against (default: the dataset's, or all).
        episodes_k: Dataset frames replayed through the policy, spread over the episodes.
        seed: Seed of the policy (its noise per episode, as in bench run).
        json_out: Also write the findings as JSON to this file.
    """
    if json_out is not None and not json_out.parent.is_dir():
        raise BenchError(f"--json {json_out}: folder {json_out.parent} does not exist")
    findings, context = check(CheckConfig(policy, checkpoint, tokenizer, norm_stats, backend, server, dataset, tasks,
                                          episodes_k, seed, tasks_dir, presets_dir))
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "FAIL": "[red]FAIL[/]", "skipped": "-"}
    rows = [(f.check, marks[f.verdict], f.detail, f.fix) for f in findings]
    print_table(pd.DataFrame(rows, columns=["check", "verdict", "detail", "fix"]), f"bench check {context['policy']}",
                console)
    if json_out is not None:
        _write(json_out, json.dumps(findings_json(findings, context), indent=2, default=str))
    return 1 if failed(findings) else 0


COMMANDS = {
    "run": run_command,
    "record": record_command,
    "compare": compare_command,
    "tasks": tasks_command,
    "policies": policies_command,
    "leaderboard": leaderboard_command,
    "report": report_command,
    "doctor": doctor_command,
    "check": check_command,
}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops a run like Ctrl-C: finished episodes are kept
    try:
        code = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="bench")
    except BenchError as e:
        console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished episodes are saved")
        return 130
    return code or 0


def entry() -> None:
    """The `bench` command and `python -m bench.cli`: `main`, then what a normal exit does (other threads joined, the
    exit handlers: logging's flush, multiprocessing's and Ray's shutdown), then the process ends without the
    interpreter's teardown. That teardown frees the CUDA context, the model and the renderers object by object,
    ~3.4 s after every GPU run (benchmarks/README.md, section 0e), and nothing is left to write by then."""
    code = main()
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
