"""The soak's report page: the flake rate with its upper bound, and each scenario's tally.

Pure: a `harness.flakes.Summary` (as the dict `summary.json` holds) in, one static HTML page out.
Each failure links to its scenario's timeline page in that run's report, relative to the
soak's directory, so the page opens from disk.
"""

from __future__ import annotations

from html import escape
from typing import Any

from harness.flakes import Summary
from harness.report.history import FLAKY, Mark, marks_html
from harness.report.pages import CSS


def _pct(x: float) -> str:
    return f"{100 * x:.3f} %"


def _failure(f: dict[str, Any], root: str) -> str:
    text = f"run {f['run']}" + (f" ({f['outcome']})" if f["outcome"] != "failed" else "")
    if not f["page"]:
        return escape(text)
    return f'<a href="{escape(root)}/{escape(f["page"])}#explanation">{escape(text)}</a>'


def render(summary: Summary, root: str, runs: list[dict[str, Any]]) -> str:
    """`summary`: a `harness.flakes.Summary`; `root`: the repo root relative to the page's
    directory; `runs`: each `RunResult` as a dict, for the list of runs at the bottom."""
    s = summary
    rows = []
    for t in sorted(s.scenarios, key=lambda t: t["failures"] == 0):
        flaky = (
            marks_html([Mark(FLAKY, "passed and failed on " + ", ".join(t["flaky_on"]))])
            if t["flaky_on"]
            else ""
        )
        failed = ", ".join(_failure(f, root) for f in t["failed"])
        cls = "failed" if t["failures"] else "passed"
        rows.append(
            f'<tr data-scenario="{escape(t["scenario"])}"><td>{escape(t["scenario"])}{flaky}</td>'
            f'<td class="num">{t["runs"]}</td><td class="num passed">{t["passes"]}</td>'
            f'<td class="num {cls}">{t["failures"]}</td><td class="num">{t["skips"]}</td>'
            f"<td>{failed}</td></tr>"
        )
    flaky_count = sum(1 for t in s.scenarios if t["flaky_on"])
    failing = sum(1 for t in s.scenarios if t["failures"] and not t["passes"])
    missing = "".join(
        f"<li class='failed'>run {r['run']} ({escape(r['kind'])}): {escape(r['problem'])}</li>"
        for r in s.runs_without_results
    )
    run_rows = "".join(
        f"<tr><td class='num'>{r['index']}</td><td>{escape(r['kind'])}</td>"
        + (
            f"<td><a href='{escape(root)}/artifacts/report/{escape(r['run_id'])}/index.html'>"
            f"{escape(r['run_id'])}</a></td>"
            if r["run_id"]
            else "<td class='muted'>none</td>"
        )
        + f"<td>{escape(r['commit'])}</td><td class='num'>{r['seconds']:.0f}</td>"
        f"<td class='num'>{sum(o == 'passed' for o in r['outcomes'].values())}</td>"
        f"<td class='num'>{sum(o not in ('passed', 'skipped') for o in r['outcomes'].values())}"
        f"</td><td class='num'>{r['exit_code']}</td></tr>"
        for r in runs
    )
    verdict = "failed" if s.failures else "passed"
    body = (
        f"<h1>lanpeer soak {escape(s.started)}</h1>"
        + (
            f'<div class="failed" id="interrupted">interrupted: {s.runs} of {s.planned} planned '
            "runs done</div>"
            if s.planned > s.runs
            else ""
        )
        + f'<div class="muted">{s.runs} runs · commit {escape(", ".join(s.commits))} · '
        f"{escape(s.started)} - {escape(s.finished)} · host {escape(s.host)} ({s.cores} cores)"
        + (f" · N01 seeds {escape(', '.join(map(str, s.seeds)))}" if s.seeds else "")
        + "</div>"
        f'<h2 class="{verdict}" id="rate">{s.failures} failures in {s.scenario_runs} scenario '
        f"runs: rate {_pct(s.rate)}, {100 * s.confidence:.0f} % upper bound "
        f"{_pct(s.upper_bound)}</h2>"
        f'<div class="muted">The bound is exact (Clopper-Pearson, one-sided): a true failure '
        f"rate above it would give this few failures less than "
        f"{100 * (1 - s.confidence):.0f} % of the time. Skipped scenarios ({s.skips}) are "
        f"not runs.</div>"
        f'<div class="marks">{flaky_count} flaky (passed and failed on one commit) · '
        f"{failing} failed every run</div>"
        + (f"<h2>runs without results</h2><ul>{missing}</ul>" if missing else "")
        + "<h2>scenarios</h2><table><tr><th>scenario</th><th>runs</th><th>passed</th>"
        "<th>failed</th><th>skipped</th><th>failures (timeline pages)</th></tr>"
        + "".join(rows)
        + "</table><h2>runs</h2><table><tr><th>#</th><th>kind</th><th>report</th>"
        "<th>tree</th><th>seconds</th><th>passed</th><th>failed</th><th>exit</th></tr>"
        + run_rows
        + "</table>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>lanpeer soak {escape(s.started)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
