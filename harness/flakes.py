"""The soak's pure core: run outcomes in; per-scenario tallies, the flake rate and its bound out.

Zero failures in five matrices bounds the flake rate at about 1.5 %; it does not measure it.
The soak counts scenario runs and failures, and gives the rate with its exact one-sided 95 %
upper bound (Clopper-Pearson): 0 failures in 600 scenario runs bound it under 0.5 %. Nothing
here runs anything: `harness/soak.py` is the shell that runs pytest and feeds these functions,
and `harness/report/soakpage.py` draws a `Summary`.
"""

from __future__ import annotations

import dataclasses
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.report import history
from harness.report.pages import page_name
from harness.reporter import RUN_PROPERTY

CONFIDENCE = 0.95
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
