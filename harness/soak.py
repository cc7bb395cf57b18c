"""`./lab soak`: the matrix run N times (and N01 over several seeds), one report of the flake rate.

The shell around `harness/flakes.py` (the bound, the tally of outcomes per scenario, the
summary): `python -m harness.soak --runs N [--seeds S1,S2,...] [pytest args]` runs
`pytest scenarios -n auto ...` N times as subprocesses, each with its own JUnit XML in the soak's
directory, then N01 once per seed. Each run appends its RUNLOG.md entry and writes its own report
under `artifacts/report/<run id>/` as any run does. Outcomes are read from the run's JUnit XML:
a file the soak alone writes (RUNLOG.md may be appended by other runs of the checkout at the same
time, and `--runlog ''` turns it off), naming each test's scenario (its `scenario` property) and
the lab's run id (the `lanpeer_run` property the reporter adds), which is where each failure's
timeline page is. The soak's report is `artifacts/soak/<stamp>/index.html` with `summary.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.flakes import (
    RunResult,
    progress,
    read_junit,
    summarize,
    tally,
    text_summary,
    time_left,
)
from harness.report import soakpage

INTERRUPT_GRACE = 120.0  # seconds a pytest interrupted by Ctrl-C gets to end its session


Runner = Callable[[list[str], Path], int]  # argv, log file -> exit code


_TERMINATED = False  # stopped by SIGTERM: the child pytest has not been told yet


def stop_on_signals() -> None:
    """Ctrl-C and a supervisor's SIGTERM both stop the soak and report what was done, even when
    it was started in the background, where a shell hands SIGINT over ignored (and Python then
    raises no KeyboardInterrupt)."""

    def terminated(_signum: int, _frame: object) -> None:
        global _TERMINATED
        _TERMINATED = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminated)


def run_logged(argv: list[str], log: Path) -> int:
    """Run one pytest, its output to `log` (the terminal gets the soak's progress lines). On
    Ctrl-C the child, in the same process group, got the SIGINT too (on SIGTERM it is sent
    one): it is given time to end its session (sweeping its containers, writing its JUnit XML)
    before the interrupt goes on."""
    with log.open("wb") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            return child.wait()
        except KeyboardInterrupt:
            if _TERMINATED and child.poll() is None:
                child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise


def tree_label(root: Path) -> str:
    """The code a run ran: the short commit, plus a fingerprint of the uncommitted changes if
    any (so two runs count as one commit only when their trees agree, as far as git tells)."""

    def git(*args: str) -> bytes:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
        return done.stdout if done.returncode == 0 else b""

    commit = git("rev-parse", "--short", "HEAD").decode().strip() or "uncommitted"
    status = git("status", "--porcelain", "--", ".", ":!RUNLOG.md", ":!artifacts")
    if not status:
        return commit
    diff = git("diff", "HEAD", "--binary", "--", ".", ":!RUNLOG.md")
    return f"{commit}+{hashlib.sha256(status + diff).hexdigest()[:8]}"


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="./lab soak",
        allow_abbrev=False,
        description="Run the scenario matrix N times (then N01 once per seed) and report each "
        "scenario's passes and failures and the flake rate with its 95 %% upper bound. Other "
        "arguments go to every pytest run.",
    )
    parser.add_argument("--runs", type=int, default=10, help="matrix runs (default 10)")
    parser.add_argument(
        "--seeds",
        type=lambda v: [int(s) for s in v.split(",") if s.strip()],
        default=[],
        help="nemesis seeds: after the matrix runs, N01 once per seed (e.g. 1,2,3)",
    )
    parser.add_argument(
        "--nemesis-minutes",
        type=float,
        default=3.0,
        help="how long each seeded N01 run applies faults (default 3)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the soak's directory (default artifacts/soak/<stamp>)",
    )
    args, rest = parser.parse_known_args(list(argv))
    if args.runs < 0:
        parser.error("--runs must be 0 or more")
    if args.runs == 0 and not args.seeds:
        parser.error("nothing to run: --runs 0 and no --seeds")
    if args.nemesis_minutes <= 0:
        parser.error("--nemesis-minutes must be positive")
    return args, rest


def plan(args: argparse.Namespace, rest: list[str]) -> list[tuple[str, list[str]]]:
    """Each pytest run as (kind, arguments after `pytest`), without the per-run JUnit path and
    run uid. Seeded runs put `-k N01` after the passed-through arguments: the last -k wins."""
    runs = [("matrix", ["scenarios", "-n", "auto", *rest]) for _ in range(args.runs)]
    for seed in args.seeds:
        runs.append(
            (
                f"seed {seed}",
                [
                    "scenarios",
                    *rest,
                    "-k",
                    "N01",
                    "--nemesis-seed",
                    str(seed),
                    "--nemesis-minutes",
                    f"{args.nemesis_minutes:g}",
                ],
            )
        )
    return runs


def soak(
    argv: Sequence[str],
    root: Path,
    runner: Runner = run_logged,
    clock: Callable[[], float] = time.monotonic,
    say: Callable[[str], None] = print,
    label: Callable[[Path], str] = tree_label,
) -> int:
    """Run the soak; returns 0 if every scenario run passed, 1 otherwise, 130 if interrupted
    (Ctrl-C: the runs done so far, and what the interrupted one finished, are still reported)."""
    args, rest = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    out = args.out or root / "artifacts" / "soak" / f"{started:%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    todo = plan(args, rest)
    say(f"[soak] {len(todo)} runs ({args.runs} matrix, {len(args.seeds)} seeded); logs in {out}")
    t0 = clock()
    done: list[RunResult] = []
    interrupted = False
    for i, (kind, pytest_args) in enumerate(todo, 1):
        junit = out / f"run-{i}.xml"
        # xdist's run uid. The lab's run id is not derived from it: the controller makes its own
        # (scenarios/conftest.py), so the run id is read back from the JUnit XML (lanpeer_run).
        uid = uuid.uuid4().hex
        cmd = [sys.executable, "-m", "pytest", *pytest_args, "--junitxml", str(junit),
               "--testrunuid", uid]  # fmt: skip
        commit = label(root)
        begun = clock()
        try:
            code = runner(cmd, out / f"run-{i}.log")
        except KeyboardInterrupt:
            interrupted, code = True, 130
        seconds = clock() - begun
        run_id, problem = "", ""
        outcomes: dict[str, str] = {}
        try:
            run_id, outcomes = read_junit(junit.read_text(errors="replace"))
        except (OSError, ET.ParseError) as exc:
            problem = f"no JUnit XML ({type(exc).__name__}); exit code {code}, see run-{i}.log"
        else:
            if not outcomes:
                problem = f"no scenario ran; exit code {code}, see run-{i}.log"
        done.append(RunResult(i, kind, run_id, commit, outcomes, seconds, code, problem))
        matrix_left = sum(k == "matrix" for k, _ in todo[i:])
        left = time_left(
            done, matrix_left, len(todo) - i - matrix_left, args.nemesis_minutes * 60 + 90
        )
        say(progress(done, len(todo), clock() - t0, left))
        if interrupted:
            say(f"[soak] interrupted during run {i}: reporting what was done")
            break
    tallies = tally(done)
    summary = summarize(
        done,
        tallies,
        f"{started:%Y-%m-%d %H:%M} UTC",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        platform.node(),
        os.cpu_count() or 0,
        args.seeds,
        len(todo),
    )
    (out / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
    (out / "index.html").write_text(
        soakpage.render(summary, os.path.relpath(root, out), [dataclasses.asdict(r) for r in done])
    )
    say(text_summary(summary))
    say(f"[soak] report: {out / 'index.html'}")
    if interrupted:
        return 130
    return 0 if summary.failures == 0 and not summary.runs_without_results else 1


def main() -> None:
    stop_on_signals()
    sys.exit(soak(sys.argv[1:], Path.cwd()))


if __name__ == "__main__":
    main()
