"""The run report's pytest side: failed scenarios explain themselves; the controller writes pages.

Every process (xdist worker or not) explains a failed scenario in `pytest_runtest_makereport`,
while the scenario's lab is still alive: each peer's last records and stderr tail and the path
of the scenario's timeline page are added to the failure text, so the terminal, the JUnit XML
and the report carry them, and the failure's moment is marked on the lab's timeline. Workers
write each scenario's timeline JSON (the `lab` fixture); the controller, at session finish,
draws `artifacts/report/<run-id>/` from those files, the run log's entries and RUNLOG.md.
Drawing is `harness.report`'s job; this module only gathers and writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key

from harness.labrun import LAB_RUN
from harness.report import history, pages, timeline
from harness.runlog import RunLog, tree

RUN_PROPERTY = "lanpeer_run"  # the JUnit XML's global property naming the lab's run id
MAX_TIMELINE = 64 * 1024 * 1024  # bytes of one timeline JSON read back


def report_dir(root: Path, run_id: str) -> Path:
    return root / "artifacts" / "report" / run_id


def timeline_path(root: Path, run_id: str, sid: str) -> Path:
    return root / "artifacts" / "timelines" / run_id / f"{sid}.json"


def _scenario(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("scenario")
    return str(marker.args[0]) if marker else None


def explain(item: pytest.Item, report: pytest.TestReport) -> None:
    """Add the lab's view of a failed scenario to its failure text (and mark the moment)."""
    sid = _scenario(item)
    run = item.config.stash.get(LAB_RUN, None)
    lab = getattr(item, "funcargs", {}).get("lab")
    if sid is None or run is None or lab is None:
        return
    crash = getattr(report.longrepr, "reprcrash", None)
    message = str(getattr(crash, "message", "") or "").strip()
    lab.note_failure(message.splitlines()[0][:300] if message else "failed")
    page = report_dir(item.config.rootpath, run.run_id) / pages.page_name(sid)
    said = report.longreprtext  # a failed wait already shows its own peer's context
    sections = [
        (f"lanpeer: {p.name}", p.context(last=12))
        for p in lab.peers
        if f"--- peer {p.name} (" not in said
    ]
    sections.append(("lanpeer: timeline", f"the scenario's timeline page: {page}"))
    add = getattr(report.longrepr, "addsection", None)
    for title, text in sections:
        if add is not None:  # in the failure text itself: the terminal and JUnit XML print it
            add(title, text)
        else:
            report.sections.append((title, text))


class Reporter:
    """pytest plugin object (registered by `harness.plugin` in every process)."""

    def __init__(self, config: pytest.Config, runlog: RunLog) -> None:
        self.config = config
        self.runlog = runlog
        self.history: list[history.Run] = []
        self.written: Path | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Read RUNLOG.md before this run appends its own entry to it, and name the run in the
        JUnit XML (`lanpeer_run`), so a reader of that file (`harness.soak`) finds its report."""
        if not self.runlog.controller:
            return
        xml = self.config.stash.get(xml_key, None)
        run = self.config.stash.get(LAB_RUN, None)
        if xml is not None and run is not None:
            xml.add_global_property(RUN_PROPERTY, run.run_id)
        path = self.config.rootpath / str(self.config.getoption("runlog") or "RUNLOG.md")
        try:
            self.history = history.parse(path.read_text(errors="replace"))
        except OSError:
            self.history = []

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.failed and report.when == "call":
            explain(item, report)
        return report

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = self.config.stash.get(LAB_RUN, None)
        if not self.runlog.controller or run is None or not self.runlog.entries:
            return
        self.written = write(self.config.rootpath, run.run_id, run.backend, self)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written is not None:
            terminalreporter.write_sep("-", f"lanpeer report: {self.written}")

    def rows(self) -> list[pages.Row]:
        return [
            pages.Row(sid, e.outcome, e.duration, e.figures, e.reason, e.explanation)
            for sid, e in self.runlog.entries.items()
        ]


def _load(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return json.loads(f.read(MAX_TIMELINE))
    except (OSError, ValueError):
        return None


def write(root: Path, run_id: str, backend: str, reporter: Reporter) -> Path:
    """Write the index and one page per scenario that left a timeline; returns the index."""
    out = report_dir(root, run_id)
    out.mkdir(parents=True, exist_ok=True)
    commit, dirty = tree()
    info = pages.RunInfo(
        run_id=run_id,
        backend=backend,
        commit=commit + (" (with uncommitted changes)" if dirty else ""),
        started=f"{reporter.runlog.started:%Y-%m-%d %H:%M} UTC",
        workers=str(reporter.runlog.workers),
    )
    rows = reporter.rows()
    now = history.Run(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} {history.THIS_RUN}",
        {r.sid: history.Result(r.outcome, r.seconds) for r in rows},
        commit=None if dirty or commit == "uncommitted" else commit,
        run_id=run_id,
    )
    written: set[str] = set()
    for row in rows:
        raw = _load(timeline_path(root, run_id, row.sid))
        if raw is None:
            continue
        html = pages.scenario(info, row, timeline.decode(raw))
        (out / pages.page_name(row.sid)).write_text(html)
        written.add(row.sid)
    xml = reporter.config.getoption("xmlpath", None)
    junit = os.path.relpath(Path(xml).resolve(), out) if xml else ""
    index = out / "index.html"
    index.write_text(pages.index(info, rows, [*reporter.history, now], written, junit))
    return index
