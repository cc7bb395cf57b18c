"""`./lab soak` (harness/soak.py): the bound, the tally, the report and the shell, with a fake
runner in place of pytest (no Docker, no child process)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from harness import flakes, soak
from harness.flakes import RunResult


def test_the_bound_for_no_failures_is_the_closed_form() -> None:
    for n in (1, 5, 63, 600, 5000):
        assert flakes.upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    assert round(100 * flakes.upper_bound(0, 600), 3) == 0.498  # the target: under 0.5 %
    assert flakes.runs_needed(0.005) == 598


def test_the_bound_with_failures_matches_clopper_pearson_tables() -> None:
    assert round(flakes.upper_bound(1, 100), 4) == 0.0466  # one-sided 95 %
    assert round(flakes.upper_bound(5, 1000), 4) == 0.0105
    for k, n in ((1, 100), (5, 1000), (3, 6000)):  # the defining equation holds
        assert flakes.binomial_cdf(k, n, flakes.upper_bound(k, n)) == pytest.approx(0.05, abs=1e-9)


def test_the_bound_at_the_edges() -> None:
    assert flakes.upper_bound(0, 0) == 1.0  # no runs: nothing known
    assert flakes.upper_bound(7, 7) == 1.0
    assert flakes.binomial_cdf(2, 10, 0.0) == 1.0 and flakes.binomial_cdf(2, 10, 1.0) == 0.0
    assert flakes.binomial_cdf(1, 2, 0.5) == pytest.approx(0.75)
    assert math.isfinite(flakes.upper_bound(10, 100_000))


def result(
    index: int, outcomes: dict[str, str], kind: str = "matrix", commit: str = "abc"
) -> RunResult:
    return RunResult(index, kind, f"run{index}", commit, outcomes, 60.0)


RUNS = [
    result(1, {"S01": "passed", "S02": "passed", "S20": "skipped", "X10": "passed"}),
    result(2, {"S01": "passed", "S02": "failed", "S20": "skipped", "X10": "error (setup)"}),
    result(3, {"S01": "passed", "S02": "passed", "X10": "failed"}, commit="def"),
    result(4, {"N01": "failed"}, kind="seed 7"),
    result(5, {"N01": "passed"}, kind="seed 8"),
]


def test_the_tally_counts_each_scenario_and_names_the_runs_that_failed() -> None:
    tallies = {t.scenario: t for t in flakes.tally(RUNS)}
    assert list(tallies) == ["N01 seed 7", "N01 seed 8", "S01", "S02", "S20", "X10"]
    s02 = tallies["S02"]
    assert (s02.runs, s02.passes, s02.failures, s02.skips) == (3, 2, 1, 0)
    assert [(f.run, f.run_id, f.page) for f in s02.failed] == [
        (2, "run2", "artifacts/report/run2/S02.html")
    ]
    assert s02.flaky_on == ["abc"]
    x10 = tallies["X10"]  # failed on both commits it failed on, never passed with a failure
    assert [(f.run, f.outcome) for f in x10.failed] == [(2, "error (setup)"), (3, "failed")]
    assert x10.flaky_on == ["abc"] and x10.failures == 2 and x10.passes == 1
    assert (tallies["S20"].runs, tallies["S20"].skips) == (0, 2)
    assert tallies["N01 seed 7"].failed[0].page == "artifacts/report/run4/N01.html"
    assert tallies["S01"].flaky_on == [] and tallies["N01 seed 8"].failures == 0


def test_the_summary_counts_scenario_runs_not_skips() -> None:
    s = flakes.summarize(RUNS, flakes.tally(RUNS), "t0", "t1", "host", 2, [7, 8])
    assert (s.scenario_runs, s.failures, s.skips) == (11, 4, 2)
    assert s.rate == pytest.approx(4 / 11)
    assert s.upper_bound == flakes.upper_bound(4, 11)
    assert s.commits == ["abc", "def"] and s.runs == 5
    text = flakes.text_summary(s)
    assert "scenario runs 11, failures 4" in text
    assert "  S02: 1 of 3 failed flaky (run 2)" in text


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="5">
<properties><property name="lanpeer_run" value="4f00c0ffee12"/></properties>
<testcase classname="scenarios.test_s01" name="test_a">
  <properties><property name="scenario" value="S01"/></properties></testcase>
<testcase classname="scenarios.test_s02" name="test_b">
  <properties><property name="scenario" value="S02"/><property name="engine" value="x"/>
  </properties><failure message="AssertionError">boom</failure></testcase>
<testcase classname="scenarios.test_s02" name="test_c">
  <properties><property name="scenario" value="S02"/></properties></testcase>
<testcase classname="scenarios.test_s20" name="test_d">
  <properties><property name="scenario" value="S20"/></properties><skipped message="no"/>
</testcase>
<testcase classname="scenarios.test_s03" name="test_e">
  <properties><property name="scenario" value="S03"/></properties><error message="setup"/>
</testcase>
<testcase classname="tests.test_x" name="test_not_a_scenario"><failure/></testcase>
</testsuite></testsuites>"""


def test_a_runs_junit_xml_gives_its_run_id_and_each_scenarios_outcome() -> None:
    run_id, outcomes = flakes.read_junit(JUNIT)
    assert run_id == "4f00c0ffee12"
    assert outcomes == {"S01": "passed", "S02": "failed", "S20": "skipped", "S03": "error"}


def test_the_progress_line_says_where_the_soak_is() -> None:
    line = flakes.progress(RUNS[:2], 10, 130.0, 480.0)
    assert line == (
        "[soak] run 2/10 took 1m00s: 1 passed, 2 failed (S02, X10), 1 skipped; "
        "so far 4 scenario runs passed, 2 failed; elapsed 2m10s, about 8m00s left"
    )
    missing = RunResult(3, "seed 4", "", "abc", {}, 5.0, 4, "no JUnit XML")
    assert "run 3/3 (N01 seed 4) took 0m05s: no results: no JUnit XML" in flakes.progress(
        [*RUNS[:2], missing], 3, 4000.0, 0.0
    )
    assert flakes.time_left(RUNS, 2, 1, 999.0) == 2 * 60.0 + 60.0
    assert flakes.time_left(RUNS[:1], 0, 2, 300.0) == 600.0  # no seeded run yet: the guess


def test_the_report_page_links_each_failure_to_its_timeline_page() -> None:
    from harness.report import soakpage

    s = flakes.summarize(RUNS, flakes.tally(RUNS), "t0", "t1", "host", 2, [7, 8])
    html = soakpage.render(s, "../../..", [r.__dict__ for r in RUNS])
    assert "4 failures in 11 scenario runs: rate 36.364 %, 95 % upper bound" in html
    assert '<a href="../../../artifacts/report/run2/S02.html#explanation">run 2</a>' in html
    assert "run 2 (error (setup))</a>" in html
    order = re.findall(r'<tr data-scenario="([^"]+)">', html)
    assert order == ["N01 seed 7", "S02", "X10", "N01 seed 8", "S01", "S20"]  # failures first
    s02 = re.search(r'<tr data-scenario="S02">(.*?)</tr>', html)
    assert s02 is not None and '<span class="badge b-flaky"' in s02[1]
    assert "2 flaky (passed and failed on one commit) · 1 failed every run" in html
    assert "<a href='../../../artifacts/report/run1/index.html'>run1</a>" in html
    assert "host host (2 cores)" in html and "commit abc, def" in html
    assert not re.search(r"https?://", html)


def test_arguments_pass_through_to_pytest_and_seeds_run_n01_last() -> None:
    args, rest = soak.parse_args(["--runs", "2", "-k", "S01 or S02", "--seeds", "3,4", "-x"])
    assert (args.runs, args.seeds, args.nemesis_minutes) == (2, [3, 4], 3.0)
    assert rest == ["-k", "S01 or S02", "-x"]
    assert soak.plan(args, rest) == [
        ("matrix", ["scenarios", "-n", "auto", "-k", "S01 or S02", "-x"]),
        ("matrix", ["scenarios", "-n", "auto", "-k", "S01 or S02", "-x"]),
        ("seed 3", ["scenarios", "-k", "S01 or S02", "-x", "-k", "N01", "--nemesis-seed", "3",
                    "--nemesis-minutes", "3"]),
        ("seed 4", ["scenarios", "-k", "S01 or S02", "-x", "-k", "N01", "--nemesis-seed", "4",
                    "--nemesis-minutes", "3"]),
    ]  # fmt: skip
    assert soak.parse_args([])[0].runs == 10
    assert soak.parse_args(["--run", "3"])[1] == ["--run", "3"]  # no abbreviations: pytest's


@pytest.mark.parametrize(
    "argv", [["--runs", "-1"], ["--runs", "0"], ["--seeds", "a"], ["--nemesis-minutes", "0"]]
)
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        soak.parse_args(argv)
    assert exit.value.code == 2 and "./lab soak" in capsys.readouterr().err


class FakeRunner:
    """Stands in for pytest: writes the JUnit XML the run was asked for, from a script."""

    def __init__(self, script: list[dict[str, str] | None]) -> None:
        self.script = script
        self.argvs: list[list[str]] = []

    def __call__(self, argv: list[str], log: Path) -> int:
        self.argvs.append(argv)
        log.write_text("pytest output\n")
        outcomes = self.script[len(self.argvs) - 1]
        if outcomes is None:
            return 3  # died before writing anything
        cases = "".join(
            f'<testcase name="t{sid}"><properties><property name="scenario" value="{sid}"/>'
            f"</properties>{'' if o == 'passed' else '<failure/>'}</testcase>"
            for sid, o in outcomes.items()
        )
        junit = Path(argv[argv.index("--junitxml") + 1])
        junit.write_text(
            f'<testsuites><testsuite><properties><property name="lanpeer_run" '
            f'value="r{len(self.argvs)}"/></properties>{cases}</testsuite></testsuites>'
        )
        return 1 if "failed" in outcomes.values() else 0


def test_the_shell_runs_each_pytest_and_writes_one_report(tmp_path: Path) -> None:
    runner = FakeRunner(
        [{"S01": "passed", "S02": "failed"}, {"S01": "passed", "S02": "passed"}, None,
         {"N01": "passed"}]
    )  # fmt: skip
    ticks = iter(range(0, 1000, 10))
    said: list[str] = []
    out = tmp_path / "soak"
    code = soak.soak(
        ["--runs", "3", "--seeds", "5", "--nemesis-minutes", "1", "--out", str(out), "-k", "S0"],
        tmp_path,
        runner,
        clock=lambda: float(next(ticks)),
        say=said.append,
        label=lambda root: "abc",
    )
    assert code == 1
    argv = runner.argvs[0]
    assert argv[1:6] == ["-m", "pytest", "scenarios", "-n", "auto"]
    assert argv[argv.index("--junitxml") + 1] == str(out / "run-1.xml")
    assert "--testrunuid" in argv and argv[6:8] == ["-k", "S0"]
    assert runner.argvs[3][-10:-4] == ["-k", "N01", "--nemesis-seed", "5", "--nemesis-minutes", "1"]
    progress = [s for s in said if s.startswith("[soak] run ")]
    assert len(progress) == 4
    assert progress[0].startswith("[soak] run 1/4 took 0m10s: 1 passed, 1 failed (S02);")
    assert "no results: no JUnit XML (FileNotFoundError); exit code 3" in progress[2]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["scenario_runs"], summary["failures"], summary["seeds"]) == (5, 1, [5])
    assert summary["runs_without_results"][0]["run"] == 3
    rows = {row["scenario"]: row for row in summary["scenarios"]}
    assert rows["S02"]["failed"][0]["page"] == "artifacts/report/r1/S02.html"
    assert rows["N01 seed 5"]["passes"] == 1
    html = (out / "index.html").read_text()
    assert 'href="../artifacts/report/r1/S02.html#explanation"' in html
    assert (out / "run-1.log").read_text() == "pytest output\n"
    assert any("failures 1" in s for s in said) and said[-1].endswith("index.html")


def test_a_clean_soak_exits_zero(tmp_path: Path) -> None:
    runner = FakeRunner([{"S01": "passed"}])
    code = soak.soak(
        ["--runs", "1", "--out", str(tmp_path)], tmp_path, runner, say=lambda s: None,
        label=lambda root: "abc",
    )  # fmt: skip
    assert code == 0


def test_an_interrupted_soak_reports_what_was_done(tmp_path: Path) -> None:
    runner = FakeRunner([{"S01": "passed"}, {"S01": "passed", "S02": "failed"}, {"S01": "passed"}])

    def interrupted_second(argv: list[str], log: Path) -> int:
        code = runner(argv, log)  # the interrupted pytest still wrote what it finished
        if len(runner.argvs) == 2:
            raise KeyboardInterrupt
        return code

    said: list[str] = []
    code = soak.soak(
        ["--runs", "3", "--out", str(tmp_path)], tmp_path, interrupted_second, say=said.append,
        label=lambda root: "abc",
    )  # fmt: skip
    assert code == 130 and len(runner.argvs) == 2
    assert "[soak] interrupted during run 2: reporting what was done" in said
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["runs"], summary["planned"], summary["scenario_runs"]) == (2, 3, 3)
    assert "soak (interrupted: 2 of 3 planned)" in "\n".join(said)
    assert "interrupted: 2 of 3 planned runs done" in (tmp_path / "index.html").read_text()


def test_the_real_runner_logs_the_childs_output(tmp_path: Path) -> None:
    import sys

    log = tmp_path / "run.log"
    argv = [
        sys.executable,
        "-c",
        "import sys; print('out'); print('err', file=sys.stderr); exit(3)",
    ]
    assert soak.run_logged(argv, log) == 3
    assert log.read_text().split() == ["out", "err"]


def test_sigterm_and_an_inherited_ignored_sigint_both_stop_the_soak() -> None:
    """A soak started in the background gets SIGINT ignored from its shell; a supervisor stops
    it with SIGTERM. Both must raise KeyboardInterrupt, the soak's way to report and end."""
    import os
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        soak.stop_on_signals()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signum)
                signal.sigtimedwait([], 0.1)  # a point where the handler runs
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
        soak._TERMINATED = False
