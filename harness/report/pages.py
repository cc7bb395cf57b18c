"""The report's two kinds of page: the run's index and one page per scenario.

Static HTML with inline CSS and a few lines of inline script (no network, opens from disk).
A failed scenario's page opens with its explanation on top and the timeline scrolled to the
failing wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from harness.report.history import (
    MARKS,
    Mark,
    Run,
    classify,
    marks_html,
    outcome_class,
    trend,
    trend_html,
)
from harness.report.svg import fit, sources_plot, swimlanes
from harness.report.timeline import Timeline

MAX_LINES = 3000  # records listed per lane below the timeline

KINDS = {
    "start": "#2ca02c",
    "restart": "#ff7f0e",
    "kill": "#d62728",
    "throttle": "#8c564b",
    "command": "#1f77b4",
    "query": "#a0a0a0",
    "file": "#9467bd",
    "failed": "#d62728",
    "local": "#7f7f7f",
    "mesh": "#17becf",
    "transfer": "#1f77b4",
    "progress": "#9ec5e8",
    "install": "#2ca02c",
    "bad": "#d62728",
    "error": "#d62728",
    "result": "#b0b0b0",
    "fault": "#e6550d",
    "heal": "#31a354",
}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}
a{color:#1f5fa8}.muted{color:#888}
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #e4e4e4;
text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#1a7f37}.failed{color:#c62828;font-weight:600}.skipped{color:#8a6d00}
.trend{display:inline-flex;align-items:flex-end;gap:2px;height:18px}
.spark{display:inline-block;width:7px;background:#1a7f37}.spark.failed{background:#c62828}
.spark.skipped{background:#d9b600}.spark.now{outline:2px solid #222;outline-offset:1px}
.scroll{overflow-x:auto;border:1px solid #ddd;background:#fff}.lanes{position:relative}
.names{position:absolute;left:1px;top:1px;pointer-events:none}.names-bg{fill:#fff;opacity:.92}
svg text{font:11px system-ui,sans-serif;fill:#222}
.lane-bg{fill:#fafafa;fill-opacity:.75}.lane:nth-of-type(even) .lane-bg{fill:#eef2f7}
.lane-name{font-weight:700;font-size:13px}.lane-addr{fill:#777}
.grid{stroke:#e2e2e2}.tick{fill:#777}.leader{stroke:#ccc}
.mark line{stroke-width:2}.link{stroke-dasharray:3 3;stroke-width:1.2;opacity:.7}
.failure{stroke:#c62828;stroke-width:2.5}.gap{fill:#d8d8d8}.waiting{fill:#c62828;opacity:.15}
.band{fill:#e6550d;opacity:.13;pointer-events:all}.band.b-pause{fill:#6a51a3}
.band.b-loss{fill:#d9b600}.band.b-rate-cap{fill:#8c564b}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:0 6px;margin-left:6px;
border-radius:8px;white-space:nowrap}.b-flaky{background:#fff0c2;color:#7a5b00}
.b-newly-failing{background:#fde0e0;color:#c62828}.b-newly-fixed{background:#dcf2e3;color:#1a7f37}
.explain{border-left:4px solid #c62828;background:#fff5f5;padding:8px 12px;margin:10px 0}
pre{white-space:pre-wrap;font-size:12px;margin:4px 0}
.legend-item{display:inline-block;margin-right:14px}
.legend-item i{display:inline-block;width:10px;height:10px;margin-right:4px}
""" + "".join(
    f".k-{k} line,.k-{k} circle{{stroke:{c};fill:{c}}}.link.k-{k}{{stroke:{c}}}"
    for k, c in KINDS.items()
)

# Scroll the timeline sideways to the failure; `data-opened` tells a test the script ran.
OPEN_AT_FAILURE = """
addEventListener('load',()=>{const f=document.getElementById('failure');
if(!f)return;const box=f.closest('.scroll');const x=f.x1.baseVal.value;
box.scrollLeft=Math.max(0,x-box.clientWidth/2);document.body.dataset.opened='failure';
document.body.dataset.scrolled=String(Math.round(box.scrollLeft));});
"""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    backend: str
    commit: str
    started: str
    workers: str


@dataclass(frozen=True)
class Row:
    """One scenario of this run, as the run log saw it."""

    sid: str
    outcome: str
    seconds: float
    figures: dict[str, object] = field(default_factory=dict)
    reason: str = ""  # one line
    explanation: str = ""  # pytest's whole failure text, with the lab's sections


def _page(title: str, body: str, script: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}"
        + (f"<script>{script}</script>" if script else "")
        + "</body></html>\n"
    )


def page_name(sid: str) -> str:
    return f"{sid}.html"


def _figures(row: Row) -> str:
    return "; ".join(f"{escape(k)}={escape(str(v))}" for k, v in sorted(row.figures.items()))


def index(
    run: RunInfo, rows: list[Row], history: list[Run], pages: set[str], junit: str = ""
) -> str:
    """The run's matrix: outcome, seconds, figures, trend and marks (flaky, newly failing,
    newly fixed) per scenario, failures first; `history` ends with this run; `junit` is the
    relative link to the run's JUnit XML, if it wrote one."""
    marked = classify(history)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    lines = []
    for row in sorted(rows, key=lambda r: (outcome_class(r.outcome) != "failed", _key(r.sid))):
        failed = outcome_class(row.outcome) == "failed"
        link = page_name(row.sid) + ("#explanation" if failed else "")
        name = f'<a href="{link}">{escape(row.sid)}</a>' if row.sid in pages else escape(row.sid)
        name += marks_html(marked.get(row.sid, []))
        note = f'<div class="failed">{escape(row.reason)}</div>' if row.reason else ""
        lines.append(
            f'<tr data-scenario="{escape(row.sid)}"><td>{name}</td>'
            f'<td class="{outcome_class(row.outcome)}">{escape(row.outcome)}</td>'
            f'<td class="num">{row.seconds:.1f}</td><td>{_figures(row)}{note}</td>'
            f"<td>{trend_html(trend(history, row.sid))}</td></tr>"
        )
    body = (
        f"<h1>lanpeer run {escape(run.run_id)}</h1>"
        f'<div class="muted">{escape(run.started)} · commit {escape(run.commit)} · backend '
        f"{escape(run.backend)} · workers {escape(run.workers)}"
        + (f' · <a href="{escape(junit)}">JUnit XML</a>' if junit else "")
        + "</div>"
        f"<h2>{escape(summary)}</h2>{marks_line(marked)}"
        "<table><tr><th>scenario</th><th>outcome</th><th>seconds</th><th>figures</th>"
        "<th>last runs (RUNLOG.md)</th></tr>" + "".join(lines) + "</table>"
    )
    return _page(f"lanpeer run {run.run_id}", body)


def marks_line(marked: dict[str, list[Mark]]) -> str:
    """How many scenarios carry each mark, with their names."""
    parts = []
    for kind in MARKS:
        sids = sorted(
            (s for s, found in marked.items() if any(m.kind == kind for m in found)), key=_key
        )
        parts.append(
            f'<span class="marks-{kind.replace(" ", "-")}">{len(sids)} {kind}'
            + (f" ({escape(', '.join(sids))})" if sids else "")
            + "</span>"
        )
    return (
        '<div class="marks">From RUNLOG.md: '
        + " · ".join(parts)
        + ' <span class="muted">(flaky: passed and failed on one commit; runs with uncommitted '
        "changes count for no commit)</span></div>"
    )


def _key(sid: str) -> tuple[str, int]:
    digits = "".join(ch for ch in sid if ch.isdigit())
    return (sid[:1], int(digits or 0))


def _legend() -> str:
    return "".join(
        f'<span class="legend-item"><i style="background:{c}"></i>{k}</span>'
        for k, c in KINDS.items()
    )


def _records(timeline: Timeline) -> str:
    out = []
    for lane in timeline.lanes:
        lines = [f"{m.t:9.3f}  {m.detail}" for m in lane.marks[:MAX_LINES]]
        tail = "\n".join(lane.stderr_tail)
        out.append(
            f"<details><summary>{escape(lane.name)}: {len(lane.marks)} marks"
            + (", stderr tail" if tail else "")
            + f"</summary><pre>{escape(chr(10).join(lines))}</pre>"
            + (f"<pre class='muted'>{escape(tail)}</pre>" if tail else "")
            + "</details>"
        )
    return "".join(out)


def scenario(run: RunInfo, row: Row, timeline: Timeline) -> str:
    """One scenario: its outcome, the failure explained, the swimlanes and source plots."""
    f = timeline.failure
    times = [m.t for lane in timeline.lanes for m in lane.marks]
    scale = fit(times + ([f.t, f.wait_from] if f else []))
    lab = timeline.lanes[0].marks if timeline.lanes else ()
    kills = tuple(m.t for m in lab if m.kind == "kill")
    explain = ""
    failed = outcome_class(row.outcome) == "failed"
    if failed or f is not None:
        wait = (
            f"<div>failing wait: peer <b>{escape(f.wait_peer)}</b> waited "
            f"{f.t - f.wait_from:.1f} s (from {f.wait_from:.3f} s) for "
            f"<code>{escape(f.wait_what)}</code></div>"
            if f is not None and f.wait_peer
            else ""
        )
        at = f' at <a href="#failure">{f.t:.3f} s</a>' if f is not None else ""
        explain = (
            f'<div class="explain" id="explanation"><b class="failed">{escape(row.outcome)}'
            f"</b>{at}: {escape(row.reason or (f.message if f else ''))}{wait}</div>"
        )
    plots = "".join(
        f"<h2>bytes per source: {escape(p.client)} downloading {escape(p.game_id)}</h2>"
        f'<div class="scroll">{sources_plot(p, scale, kills)}</div>'
        for p in timeline.plots
    )
    details = f"<h2>failure</h2><pre>{escape(row.explanation)}</pre>" if row.explanation else ""
    body = (
        f'<div><a href="index.html">← run {escape(run.run_id)}</a></div>'
        f"<h1>{escape(row.sid)} <span class='{outcome_class(row.outcome)}'>"
        f"{escape(row.outcome)}</span></h1>"
        f'<div class="muted">{row.seconds:.1f} s'
        + (f" · {_figures(row)}" if row.figures else "")
        + f"</div>{explain}"
        f"<h2>timeline</h2>{swimlanes(timeline, scale)}"
        f'<div class="muted">{_legend()}</div>{plots}{details}'
        f"<h2>records</h2>{_records(timeline)}"
        + "".join(f"<div class='failed'>{escape(p)}</div>" for p in timeline.problems)
    )
    return _page(f"{row.sid} {row.outcome}", body, OPEN_AT_FAILURE)
