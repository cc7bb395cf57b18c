"""Past runs read back from RUNLOG.md, for each scenario's trend on the report's index.

RUNLOG.md is markdown written by `harness.runlog` and edited by people, so anything that is not
a run heading or a scenario row is ignored rather than trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

_HEADING = re.compile(r"### (?P<when>.+?) UTC - (?P<summary>.*)\Z")
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


def parse(text: str) -> list[Run]:
    """Every run in RUNLOG.md, oldest first, with each scenario's outcome and seconds."""
    runs: list[Run] = []
    for line in text[-MAX_TEXT:].splitlines():
        heading = _HEADING.match(line)
        if heading:
            runs.append(Run(heading["when"]))
            continue
        row = _ROW.match(line)
        if row and runs:
            runs[-1].results[row["sid"]] = Result(row["outcome"], float(row["seconds"]))
    return runs


def trend(runs: list[Run], sid: str, last: int = 10) -> list[tuple[str, Result]]:
    """The last `last` runs that ran `sid`: (when, result), oldest first."""
    return [(r.when, r.results[sid]) for r in runs if sid in r.results][-last:]


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
