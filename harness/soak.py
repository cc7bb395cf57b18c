"""`./lab soak`: the matrix run N times (and N01 over several seeds), one report of the flake rate.

Zero failures in five matrices bounds the flake rate at about 1.5 %; it does not measure it.
A soak counts scenario runs and failures, and gives the rate with its exact one-sided 95 %
upper bound (Clopper-Pearson): 0 failures in 600 scenario runs bound it under 0.5 %.

A pure core (the bound, the tally of outcomes per scenario, the summary) and a thin shell:
`python -m harness.soak --runs N [--seeds S1,S2,...] [pytest args]` runs
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
import math
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report import history
from harness.reporter import RUN_PROPERTY

CONFIDENCE = 0.95
INTERRUPT_GRACE = 120.0  # seconds a pytest interrupted by Ctrl-C gets to end its session
SCENARIO_PROPERTY = "scenario"  # the user property scenarios/conftest.py gives every scenario


# --- the statistics ------------------------------------------------------------------------


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in logs (n in the thousands does not overflow)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(k + 1):
        log_choose = math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        total += math.exp(log_choose + i * log_p + (n - i) * log_q)
    return min(total, 1.0)


def upper_bound(failures: int, runs: int, confidence: float = CONFIDENCE) -> float:
    """The exact (Clopper-Pearson) one-sided upper confidence bound of a failure rate: the p at
    which P(X <= failures; runs, p) = 1 - confidence, by bisection on the binomial CDF (which
    falls as p grows). For 0 failures that is 1 - (1 - confidence) ** (1 / runs)."""
    if runs <= 0 or failures >= runs:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = 0.0, 1.0
    for _ in range(100):  # 2**-100: far below any rate a soak can tell apart
        mid = (lo + hi) / 2
        if binomial_cdf(failures, runs, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def runs_needed(rate: float, confidence: float = CONFIDENCE) -> int:
    """Scenario runs that, all passing, bound the failure rate under `rate`."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-rate))


# --- one run's outcomes and the tally ------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """One pytest run of the soak, as its JUnit XML tells it."""

    index: int  # 1-based, in the order the soak ran them
    kind: str  # "matrix", or "seed S" for an N01 run with that nemesis seed
    run_id: str  # the lab's run id ("" if the run wrote none): artifacts/report/<run id>/
    commit: str  # the tree it ran: short commit, "+<fingerprint>" if it had uncommitted changes
    outcomes: dict[str, str]  # scenario -> passed, failed, skipped, error (...)
    seconds: float
    exit_code: int = 0
    problem: str = ""  # why there are no outcomes (no JUnit XML, unreadable), else ""

    def label(self, sid: str) -> str:
        """The scenario as the soak counts it: N01 under a seed is its own row."""
        return f"{sid} {self.kind}" if self.kind != "matrix" else sid


@dataclass
class Failure:
    run: int  # RunResult.index
    run_id: str
    outcome: str
    page: str  # the scenario's timeline page, relative to the repo root ("" if unknown)


@dataclass
class Tally:
    scenario: str  # as the soak counts it ("N01 seed 7" for a seeded run)
    passes: int = 0
    failures: int = 0
    skips: int = 0
    failed: list[Failure] = field(default_factory=list)
    flaky_on: list[str] = field(default_factory=list)  # commits where it passed and failed

    @property
    def runs(self) -> int:
        return self.passes + self.failures


def page_path(run_id: str, sid: str) -> str:
    """A scenario's page in its run's report, relative to the repo root (see harness.reporter)."""
    from harness.report.pages import page_name

    return f"artifacts/report/{run_id}/{page_name(sid)}" if run_id else ""


def scenario_key(label: str) -> tuple[str, int, str]:
    sid, _, rest = label.partition(" ")
    digits = "".join(ch for ch in sid if ch.isdigit())
    return (sid[:1], int(digits or 0), rest)


def tally(runs: Sequence[RunResult]) -> list[Tally]:
    """Per scenario (in matrix order): passes, failures (with their runs and pages), skips, and
    the commits on which it both passed and failed (`history.flaky_commits`)."""
    found: dict[str, Tally] = {}
    for run in runs:
        for sid, outcome in run.outcomes.items():
            label = run.label(sid)
            t = found.setdefault(label, Tally(label))
            kind = history.outcome_class(outcome)
            if kind == "passed":
                t.passes += 1
            elif kind == "skipped":
                t.skips += 1
            else:
                t.failures += 1
                t.failed.append(Failure(run.index, run.run_id, outcome, page_path(run.run_id, sid)))
    as_history = [
        history.Run(
            str(r.index),
            {r.label(s): history.Result(o, 0.0) for s, o in r.outcomes.items()},
            r.commit,
        )
        for r in runs
    ]
    for label, t in found.items():
        t.flaky_on = [c for c, _, _ in history.flaky_commits(as_history, label)]
    return [found[k] for k in sorted(found, key=scenario_key)]


@dataclass
class Summary:
    started: str  # UTC
    finished: str
    host: str
    cores: int
    commits: list[str]
    runs: int  # pytest runs (matrix and seeded)
    seeds: list[int]
    scenario_runs: int  # passes + failures (skips are not runs)
    failures: int
    skips: int
    rate: float
    upper_bound: float  # one-sided, CONFIDENCE
    confidence: float
    runs_without_results: list[dict[str, Any]]
    scenarios: list[dict[str, Any]]
    planned: int = 0  # pytest runs asked for; more than `runs` if the soak was interrupted


def summarize(
    runs: Sequence[RunResult],
    tallies: Sequence[Tally],
    started: str,
    finished: str,
    host: str,
    cores: int,
    seeds: Sequence[int] = (),
    planned: int = 0,
) -> Summary:
    scenario_runs = sum(t.runs for t in tallies)
    failures = sum(t.failures for t in tallies)
    return Summary(
        started=started,
        finished=finished,
        host=host,
        cores=cores,
        commits=list(dict.fromkeys(r.commit for r in runs)),
        runs=len(runs),
        seeds=list(seeds),
        scenario_runs=scenario_runs,
        failures=failures,
        skips=sum(t.skips for t in tallies),
        rate=failures / scenario_runs if scenario_runs else 0.0,
        upper_bound=upper_bound(failures, scenario_runs),
        confidence=CONFIDENCE,
        runs_without_results=[
            {"run": r.index, "kind": r.kind, "exit_code": r.exit_code, "problem": r.problem}
            for r in runs
            if r.problem
        ],
        scenarios=[
            {**dataclasses.asdict(t), "runs": t.runs, "flaky": bool(t.flaky_on)} for t in tallies
        ],
        planned=max(planned, len(runs)),
    )


def read_junit(text: str) -> tuple[str, dict[str, str]]:
    """(the lab's run id, outcome per scenario) from a run's JUnit XML. A scenario with several
    tests failed if any failed, was skipped if all were, and passed otherwise, as in RUNLOG.md;
    tests without a scenario (not part of the matrix) are left out."""
    root = ET.fromstring(text)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    run_id = ""
    per: dict[str, list[str]] = {}
    for suite in suites:
        for prop in suite.findall("properties/property"):
            if prop.get("name") == RUN_PROPERTY:
                run_id = prop.get("value", "")
        for case in suite.iter("testcase"):
            sid = next(
                (
                    p.get("value", "")
                    for p in case.findall("properties/property")
                    if p.get("name") == SCENARIO_PROPERTY
                ),
                "",
            )
            if not sid:
                continue
            if case.find("failure") is not None:
                outcome = "failed"
            elif case.find("error") is not None:
                outcome = "error"
            elif case.find("skipped") is not None:
                outcome = "skipped"
            else:
                outcome = "passed"
            per.setdefault(sid, []).append(outcome)
    outcomes = {}
    for sid, seen in per.items():
        bad = [o for o in seen if o not in ("passed", "skipped")]
        outcomes[sid] = bad[0] if bad else ("skipped" if set(seen) == {"skipped"} else "passed")
    return run_id, outcomes


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress(done: Sequence[RunResult], total: int, elapsed: float, left: float | None) -> str:
    """The line printed after each run: which run, this run's and the soak's scenario counts,
    time spent and (an estimate of) time left."""
    last = done[-1]
    bad = [s for s, o in last.outcomes.items() if history.outcome_class(o) == "failed"]
    passed = sum(history.outcome_class(o) == "passed" for r in done for o in r.outcomes.values())
    failed = sum(history.outcome_class(o) == "failed" for r in done for o in r.outcomes.values())
    what = "" if last.kind == "matrix" else f" (N01 {last.kind})"
    ok = sum(history.outcome_class(o) == "passed" for o in last.outcomes.values())
    skipped = len(last.outcomes) - ok - len(bad)
    this = (
        f"no results: {last.problem}"
        if last.problem
        else f"{ok} passed, {len(bad)} failed"
        + (f" ({', '.join(sorted(bad, key=scenario_key))})" if bad else "")
        + (f", {skipped} skipped" if skipped else "")
    )
    eta = f", about {duration(left)} left" if left is not None and len(done) < total else ""
    return (
        f"[soak] run {len(done)}/{total}{what} took {duration(last.seconds)}: {this}; "
        f"so far {passed} scenario runs passed, {failed} failed; "
        f"elapsed {duration(elapsed)}{eta}"
    )


def time_left(
    done: Sequence[RunResult], matrix_left: int, seeds_left: int, seed_guess: float
) -> float:
    """Remaining matrix runs at the mean of those done, remaining seeded runs at the mean of
    those done or, before any, at `seed_guess` seconds."""
    matrix = [r.seconds for r in done if r.kind == "matrix"]
    seeded = [r.seconds for r in done if r.kind != "matrix"]
    per_matrix = sum(matrix) / len(matrix) if matrix else 0.0
    per_seed = sum(seeded) / len(seeded) if seeded else seed_guess
    return matrix_left * per_matrix + seeds_left * per_seed


def text_summary(s: Summary) -> str:
    """What the soak prints at the end."""
    cut = f" (interrupted: {s.runs} of {s.planned} planned)" if s.planned > s.runs else ""
    lines = [
        f"soak{cut}: {s.runs} runs ({', '.join(s.commits) or 'no commit'}), host {s.host} "
        f"({s.cores} cores), {s.started} - {s.finished}",
        f"scenario runs {s.scenario_runs}, failures {s.failures} (skipped {s.skips}): "
        f"rate {100 * s.rate:.3f} %, {100 * s.confidence:.0f} % upper bound "
        f"{100 * s.upper_bound:.3f} %",
    ]
    for row in s.scenarios:
        if row["failures"]:
            runs = ", ".join(f"run {f['run']}" for f in row["failed"])
            flaky = " flaky" if row["flaky"] else ""
            lines.append(
                f"  {row['scenario']}: {row['failures']} of {row['runs']} failed{flaky} ({runs})"
            )
    for r in s.runs_without_results:
        lines.append(f"  run {r['run']} ({r['kind']}) left no results: {r['problem']}")
    return "\n".join(lines)


# --- the shell -----------------------------------------------------------------------------

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
    from harness.report import soakpage

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
