"""pytest plugin: append one entry per matrix run to RUNLOG.md.

Workers report outcomes through pytest's own report objects (xdist forwards them, with their
`user_properties`), so only the controller writes the file: one entry per run, never torn.
Scenarios add figures with the `figure` fixture; timelines are written by the `lab` fixture.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FIGURE = "figure:"

Figure = Callable[[str, object], None]


@dataclass
class Entry:
    outcome: str = "passed"
    duration: float = 0.0
    figures: dict[str, object] = field(default_factory=dict)
    reason: str = ""


@dataclass
class RunLog:
    rootdir: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

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
            entry.reason = (
                str(report.longreprtext).strip().splitlines()[-1][:200]
                if (report.longreprtext)
                else ""
            )

    def render(self, backend: str, workers: str) -> str:
        commit = _git("rev-parse", "--short", "HEAD") or "uncommitted"
        changed = _git("status", "--porcelain", "--", ".", ":!RUNLOG.md")
        dirty = " (with uncommitted changes)" if changed else ""
        counts: dict[str, int] = {}
        for e in self.entries.values():
            counts[e.outcome] = counts.get(e.outcome, 0) + 1
        summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
        lines = [
            f"### {self.started:%Y-%m-%d %H:%M} UTC - {summary}",
            "",
            f"- commit `{commit}`{dirty}; backend `{backend}`; workers `{workers}`; "
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


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lanpeer run log")
    group.addoption(
        "--runlog",
        default="RUNLOG.md",
        help="file to append the run entry to, relative to the rootdir ('' = off)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("runlog") and not hasattr(config, "workerinput"):
        config.stash[_KEY] = RunLog(Path(config.rootpath))


_KEY = pytest.StashKey[RunLog]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or _KEY not in config.stash:
        return
    if report.when == "call" or report.failed or report.skipped:
        config.stash[_KEY].add(report)


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _KEY not in config.stash:
        return
    log = config.stash[_KEY]
    if not log.entries:
        return
    path = log.rootdir / str(config.getoption("runlog"))
    if not path.exists():
        path.write_text(
            "# lanpeer run log\n\nOne entry per matrix run, appended by "
            "`harness/runlog.py`. Newest last.\n\n"
        )
    backend = os.environ.get("LANPEER_BACKEND_CHOSEN", "?")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT") or str(
        getattr(config.option, "numprocesses", None) or 1
    )
    with path.open("a") as f:
        f.write(log.render(backend, workers))


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """Record a notable figure (e.g. download MiB/s) for this scenario's run-log row."""

    def record(name: str, value: object) -> None:
        request.node.user_properties.append((FIGURE + name, value))

    return record
