"""Past runs read back from RUNLOG.md, for each scenario's trend and marks on the report's index.

RUNLOG.md is markdown written by `harness.runlog` and edited by people, so anything that is not
a run heading, its commit line or a scenario row is ignored rather than trusted.

A run's commit is what its `- commit `abc`` line says, except that a run "(with uncommitted
changes)" has no known commit (`None`): its code is the commit plus an edit nobody recorded,
and two such runs on one commit may have run different code (a fix being written), so a pass
and a failure between them are no evidence of a flake. Counting them as one extra "dirty"
commit would report every fix in progress as flaky. They still count for "newly failing" and
"newly fixed", which compare a run with the one before it whatever code either ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

_HEADING = re.compile(r"### (?P<when>.+?) UTC - (?P<summary>.*)\Z")
_COMMIT = re.compile(
    r"- commit `(?P<commit>[^`]+)`(?P<dirty> \(with uncommitted changes\))?"
    r"(?:; run `(?P<run>[^`]+)`)?"
)
_ROW = re.compile(r"\| (?P<sid>[A-Z]\d+) \| (?P<outcome>[^|]+?) \| (?P<seconds>\d+(?:\.\d+)?) \|")
THIS_RUN = "(this run)"  # how the reporter labels the run being reported, last in the trend
MAX_TEXT = 2_000_000  # characters of RUNLOG.md read; older runs beyond that are left out


@dataclass(frozen=True)
class Result:
    outcome: str
    seconds: float


@dataclass
class Run:
    when: str
    results: dict[str, Result] = field(default_factory=dict)
    commit: str | None = None  # None: not recorded, or run with uncommitted changes
    run_id: str = ""  # the lab's run id, where the entry names it


def parse(text: str) -> list[Run]:
    """Every run in RUNLOG.md, oldest first, with each scenario's outcome and seconds."""
    runs: list[Run] = []
    for line in text[-MAX_TEXT:].splitlines():
        heading = _HEADING.match(line)
        if heading:
            runs.append(Run(heading["when"]))
            continue
        commit = _COMMIT.match(line)
        if commit and runs:
            known = commit["commit"] != "uncommitted" and not commit["dirty"]
            runs[-1].commit = commit["commit"] if known else None
            runs[-1].run_id = commit["run"] or ""
            continue
        row = _ROW.match(line)
        if row and runs:
            runs[-1].results[row["sid"]] = Result(row["outcome"], float(row["seconds"]))
    return runs


def trend(runs: list[Run], sid: str, last: int = 10) -> list[tuple[str, Result]]:
    """The last `last` runs that ran `sid`: (when, result), oldest first."""
    return [(r.when, r.results[sid]) for r in runs if sid in r.results][-last:]


FLAKY, NEWLY_FAILING, NEWLY_FIXED = "flaky", "newly failing", "newly fixed"
MARKS = (FLAKY, NEWLY_FAILING, NEWLY_FIXED)


@dataclass(frozen=True)
class Mark:
    kind: str  # one of MARKS
    why: str  # one line, for a tooltip


def _ran(result: Result | None) -> str | None:
    """ "passed" or "failed" for a scenario that ran; None if it was skipped or absent."""
    if result is None or outcome_class(result.outcome) == "skipped":
        return None
    return outcome_class(result.outcome)


def flaky_commits(runs: list[Run], sid: str) -> list[tuple[str, int, int]]:
    """Each known commit on which `sid` both passed and failed: (commit, passes, failures),
    in the order the commits first ran it."""
    seen: dict[str, list[int]] = {}
    for run in runs:
        outcome = _ran(run.results.get(sid))
        if outcome is None or run.commit is None:
            continue
        counts = seen.setdefault(run.commit, [0, 0])
        counts[outcome == "failed"] += 1
    return [(c, p, f) for c, (p, f) in seen.items() if p and f]


def marks(runs: list[Run], sid: str) -> list[Mark]:
    """What the history says of `sid` in the last run of `runs` (the run being reported):
    flaky if it passed and failed on one commit (that run included); newly failing if it
    failed there and passed in the previous run that ran it; newly fixed the other way."""
    if not runs:
        return []
    out = []
    flaky = flaky_commits(runs, sid)
    if flaky:
        why = "; ".join(f"{p} passed, {f} failed on {c}" for c, p, f in flaky)
        out.append(Mark(FLAKY, why))
    now = _ran(runs[-1].results.get(sid))
    before = next((r for r in reversed(runs[:-1]) if _ran(r.results.get(sid)) is not None), None)
    if now is not None and before is not None:
        was = _ran(before.results[sid])
        if now == "failed" and was == "passed":
            out.append(Mark(NEWLY_FAILING, f"passed in the run of {before.when}"))
        elif now == "passed" and was == "failed":
            out.append(Mark(NEWLY_FIXED, f"failed in the run of {before.when}"))
    return out


def classify(runs: list[Run]) -> dict[str, list[Mark]]:
    """`marks` for every scenario of the last run (the run being reported)."""
    if not runs:
        return {}
    return {sid: found for sid in runs[-1].results if (found := marks(runs, sid))}


def marks_html(found: list[Mark]) -> str:
    """Small labelled badges, one per mark, the reason as a tooltip."""
    return "".join(
        f'<span class="badge b-{m.kind.replace(" ", "-")}" title="{escape(m.why)}">'
        f"{escape(m.kind)}</span>"
        for m in found
    )


def outcome_class(outcome: str) -> str:
    """The CSS class of an outcome ("error (setup)" counts as failed)."""
    if outcome in ("passed", "skipped"):
        return outcome
    return "failed"


def trend_html(points: list[tuple[str, Result]]) -> str:
    """One square per run, coloured by outcome, as tall as its duration relative to the rest."""
    if not points:
        return '<span class="muted">no history</span>'
    peak = max(r.seconds for _, r in points) or 1.0
    cells = []
    for when, r in points:
        height = 4 + 14 * r.seconds / peak
        now = " now" if when.endswith(THIS_RUN) else ""
        cells.append(
            f'<span class="spark {outcome_class(r.outcome)}{now}" style="height:{height:.0f}px" '
            f'title="{escape(when)}: {escape(r.outcome)}, {r.seconds:.1f} s"></span>'
        )
    return '<span class="trend">' + "".join(cells) + "</span>"
