"""The run log: one entry per matrix run appended to RUNLOG.md, and the `figure` fixture.

`RunLog` is a plugin object; `harness.plugin` registers one in every pytest process. Every
process serves the `figure` fixture; only the controller (or an undistributed run) writes the
file. Workers report outcomes through pytest's own report objects (xdist forwards them, with
their `user_properties`), so the controller writes one entry per run, never torn. Timelines
are written by the `lab` fixture (scenarios/conftest.py); the controller's entries also feed the
HTML report (`harness.reporter`), with or without a run log file.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from harness.labrun import LAB_RUN

FIGURE = "figure:"

Figure = Callable[[str, object], None]


@dataclass
class Entry:
    outcome: str = "passed"
    duration: float = 0.0
    figures: dict[str, object] = field(default_factory=dict)
    reason: str = ""  # one line: why it failed or was skipped
    explanation: str = ""  # pytest's whole failure text


class _WorkerNode(Protocol):
    """What the run log reads of xdist's `WorkerController`."""

    workerinput: dict[str, Any]


class RunLog:
    """pytest plugin object: collects scenario outcomes and figures, appends the entry."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        option = str(config.getoption("runlog") or "")
        self.controller = not hasattr(config, "workerinput")
        # None: nothing to write here (a worker, or `--runlog ''`); the fixture still serves.
        self.path: Path | None = config.rootpath / option if option and self.controller else None
        self.entries: dict[str, Entry] = {}
        self.started = dt.datetime.now(dt.UTC)
        self.workers = 1  # an undistributed run; xdist tells the controller otherwise

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: _WorkerNode) -> None:
        """xdist, on the controller, once per worker it starts: how many workers there are."""
        self.workers = int(node.workerinput["workercount"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.controller and (report.when == "call" or report.failed or report.skipped):
            self.add(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.path is None or not self.entries:
            return
        if not self.path.exists():
            self.path.write_text(
                "# lanpeer run log\n\nOne entry per matrix run, appended by "
                "`harness/runlog.py`. Newest last.\n\n"
            )
        run = self.config.stash.get(LAB_RUN, None)
        with self.path.open("a") as f:
            f.write(
                self.render(
                    run.backend if run else "?", str(self.workers), run.run_id if run else ""
                )
            )

    @pytest.fixture
    def figure(self, request: pytest.FixtureRequest) -> Figure:
        """Record a notable figure (e.g. download MiB/s) for this scenario's run-log row."""

        def record(name: str, value: object) -> None:
            request.node.user_properties.append((FIGURE + name, value))

        return record

    def add(self, report: pytest.TestReport) -> None:
        scenario = next((str(v) for k, v in report.user_properties if k == "scenario"), None)
        if scenario is None:
            return
        entry = self.entries.setdefault(scenario, Entry())
        entry.duration += report.duration
        for key, value in report.user_properties:
            if isinstance(key, str) and key.startswith(FIGURE):
                entry.figures[key.removeprefix(FIGURE)] = value
        if report.skipped:
            entry.outcome = "skipped"
            if isinstance(report.longrepr, tuple):
                entry.reason = str(report.longrepr[2])
        elif report.failed:
            entry.outcome = "failed" if report.when == "call" else f"error ({report.when})"
            crash = getattr(report.longrepr, "reprcrash", None)
            text = str(getattr(crash, "message", "") or report.longreprtext).strip()
            entry.reason = text.splitlines()[0][:200] if text else ""
            entry.explanation += report.longreprtext

    def render(self, backend: str, workers: str, run_id: str = "") -> str:
        """The entry; the run id ties it to `artifacts/report/<run id>/` (and a soak to it)."""
        commit, changed = tree()
        dirty = " (with uncommitted changes)" if changed else ""
        run = f"; run `{run_id}`" if run_id else ""
        counts: dict[str, int] = {}
        for e in self.entries.values():
            counts[e.outcome] = counts.get(e.outcome, 0) + 1
        summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
        lines = [
            f"### {self.started:%Y-%m-%d %H:%M} UTC - {summary}",
            "",
            f"- commit `{commit}`{dirty}{run}; backend `{backend}`; workers `{workers}`; "
            f"wall {(dt.datetime.now(dt.UTC) - self.started).total_seconds():.0f} s",
            "",
            "| scenario | outcome | seconds | figures |",
            "| --- | --- | --- | --- |",
        ]
        for sid in sorted(self.entries, key=_scenario_key):
            e = self.entries[sid]
            figures = "; ".join(f"{k}={v}" for k, v in sorted(e.figures.items()))
            if e.reason:
                figures = (figures + "; " if figures else "") + e.reason.replace("|", "/")
            lines.append(f"| {sid} | {e.outcome} | {e.duration:.1f} | {figures} |")
        return "\n".join(lines) + "\n\n"


def _scenario_key(sid: str) -> tuple[str, int]:
    digits = "".join(ch for ch in sid if ch.isdigit())
    return (sid[0], int(digits or 0))


def tree() -> tuple[str, bool]:
    """The checkout's short commit ("uncommitted" if none) and whether it has uncommitted
    changes (RUNLOG.md, which every run appends to, does not count)."""
    commit = git("rev-parse", "--short", "HEAD") or "uncommitted"
    return commit, bool(git("status", "--porcelain", "--", ".", ":!RUNLOG.md"))


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
