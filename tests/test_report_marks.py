"""The run report's marks from RUNLOG history: flaky, newly failing, newly fixed (no Docker)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import pytest

from harness.report import history, pages
from harness.report.history import FLAKY, NEWLY_FAILING, NEWLY_FIXED, Result, Run
from harness.runlog import Entry, RunLog, tree

RUN = pages.RunInfo("run1", "docker", "ccc", "2026-12-04 10:00 UTC", "2")

RUNLOG = """# lanpeer run log

### 2026-12-01 10:00 UTC - 3 passed

- commit `aaa`; backend `docker`; workers `2`; wall 60 s

| scenario | outcome | seconds | figures |
| --- | --- | --- | --- |
| S01 | passed | 1.0 | |
| S02 | passed | 1.0 | |
| S03 | failed | 1.0 | AssertionError |

### 2026-12-02 10:00 UTC - 2 passed, 1 failed

- commit `aaa` (with uncommitted changes); run `0123456789ab`; backend `docker`; wall 1 s

| S01 | failed | 1.0 | |
| S02 | passed | 1.0 | |
| S03 | passed | 1.0 | |

### 2026-12-03 10:00 UTC - 1 passed

- commit `bbb`; run `fedcba987654`; backend `docker`; workers `2`; wall 60 s

| S02 | passed | 1.0 | |
| S03 | skipped | 0.0 | needs docker |
"""


def run(when: str, commit: str | None, **outcomes: str) -> Run:
    return Run(when, {s: Result(o, 1.0) for s, o in outcomes.items()}, commit)


def kinds(found: list[history.Mark]) -> list[str]:
    return [m.kind for m in found]


def test_parse_reads_each_runs_commit_and_run_id() -> None:
    runs = history.parse(RUNLOG)
    assert [r.commit for r in runs] == ["aaa", None, "bbb"]  # uncommitted changes: unknown
    assert [r.run_id for r in runs] == ["", "0123456789ab", "fedcba987654"]
    assert runs[1].results["S01"] == Result("failed", 1.0)


def test_a_pass_and_a_failure_on_one_commit_is_flaky() -> None:
    runs = [
        run("1", "aaa", S01="passed"),
        run("2", "bbb", S01="passed"),
        run("3", "aaa", S01="failed"),
    ]
    found = history.marks(runs, "S01")
    assert kinds(found) == [FLAKY, NEWLY_FAILING]
    assert found[0].why == "1 passed, 1 failed on aaa"
    assert history.flaky_commits(runs, "S01") == [("aaa", 1, 1)]


def test_a_pass_and_a_failure_on_different_commits_is_not_flaky() -> None:
    runs = [run("1", "aaa", S01="failed"), run("2", "bbb", S01="passed")]
    assert kinds(history.marks(runs, "S01")) == [NEWLY_FIXED]


def test_runs_with_uncommitted_changes_are_no_evidence_of_a_flake() -> None:
    runs = [run("1", None, S01="passed"), run("2", None, S01="failed")]
    assert kinds(history.marks(runs, "S01")) == [NEWLY_FAILING]  # but still a change


def test_the_previous_run_is_the_last_one_that_ran_the_scenario() -> None:
    runs = [
        run("1", "aaa", S01="passed"),
        run("2", "bbb", S01="skipped"),  # skipped: did not run
        run("3", "ccc", S02="passed"),  # did not include it
        run("4", "ddd", S01="error (setup)"),  # an error is a failure
    ]
    found = history.marks(runs, "S01")
    assert kinds(found) == [NEWLY_FAILING] and found[0].why == "passed in the run of 1"
    assert history.marks([run("1", "aaa", S01="failed")], "S01") == []  # no previous run
    assert history.marks([run("1", "a", S01="failed"), run("2", "b", S01="skipped")], "S01") == []


def test_classify_marks_only_the_scenarios_of_the_run_being_reported() -> None:
    runs = [*history.parse(RUNLOG), run("now", "bbb", S01="passed", S03="failed")]
    marked = history.classify(runs)
    assert {s: kinds(m) for s, m in marked.items()} == {
        "S01": [NEWLY_FIXED],  # failed in the run before (uncommitted changes count for that)
        "S03": [NEWLY_FAILING],  # passed last time it ran (the skip is no run)
    }
    again = [*runs, run("later", "bbb", S03="passed", S02="passed")]
    assert {s: kinds(m) for s, m in history.classify(again).items()} == {
        "S03": [FLAKY, NEWLY_FIXED]
    }
    assert history.classify([]) == {}


def test_the_index_shows_badges_and_a_count_line() -> None:
    runs = [
        run("1", "ccc", S01="passed", S02="failed", S03="passed"),
        run("now (this run)", "ccc", S01="failed", S02="passed", S03="passed"),
    ]
    rows = [
        pages.Row("S01", "failed", 1.0),
        pages.Row("S02", "passed", 1.0),
        pages.Row("S03", "passed", 1.0),
    ]
    html = pages.index(RUN, rows, runs, {"S01"})
    s01 = re.search(r'<tr data-scenario="S01">(.*?)</tr>', html)
    assert s01 is not None
    assert '<span class="badge b-flaky" title="1 passed, 1 failed on ccc">flaky</span>' in s01[1]
    assert '<span class="badge b-newly-failing"' in s01[1]
    s03 = re.search(r'<tr data-scenario="S03">(.*?)</tr>', html)
    assert s03 is not None and "badge" not in s03[1]
    assert '<span class="marks-flaky">2 flaky (S01, S02)</span>' in html
    assert '<span class="marks-newly-failing">1 newly failing (S01)</span>' in html
    assert '<span class="marks-newly-fixed">1 newly fixed (S02)</span>' in html


class _Config:
    """What RunLog reads of pytest's config."""

    rootpath = Path("/nonexistent")

    def getoption(self, name: str) -> str:
        return ""


def test_a_runlog_entry_names_its_run_and_reads_back() -> None:
    log = RunLog(cast(pytest.Config, _Config()))
    log.entries = {"S01": Entry("passed", 1.0), "S02": Entry("failed", 2.0, reason="boom")}
    text = log.render("docker", "2", "0123456789ab")
    assert "; run `0123456789ab`; backend `docker`" in text
    (parsed,) = history.parse(text)
    commit, dirty = tree()
    assert parsed.run_id == "0123456789ab"
    assert parsed.commit == (None if dirty else commit)
    assert parsed.results["S02"] == Result("failed", 2.0)
