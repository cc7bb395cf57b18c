"""A failed scenario explains itself, and the run leaves a report that shows the failure.

A child pytest runs two fake scenarios that fail on the local backend (real peer subprocesses,
the real `scenarios/conftest.py`): one with a plain assertion, one with a wait that times out.
The terminal and the JUnit XML must then carry each peer's last records, its stderr tail and
the path of the scenario's timeline page, and the report's pages must open at the failure.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import flakes

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).parents[1] / "scenarios" / "conftest.py"

FAKE = """
import pytest

from harness import soak

from harness.lab import Lab


@pytest.mark.scenario("F01")
def test_plain_assertion(lab: Lab) -> None:
    lonely = lab.peer("lonely")
    other = lab.peer("other")
    lonely.connect(other)
    game = lonely.game("alienswarm")
    assert game is not None


@pytest.mark.scenario("F02")
def test_failed_wait(lab: Lab) -> None:
    waiter = lab.peer("waiter")
    waiter.expect("download-finished", timeout=0.5)
"""


@pytest.fixture
def run(pytester: pytest.Pytester) -> tuple[pytest.RunResult, Path]:
    """The child run's result and its root directory (where artifacts/ and junit.xml are)."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_fake=FAKE)
    result = pytester.runpytest_subprocess(
        "-p", "harness.plugin", "--backend", "local", "--runlog", "", "--junitxml=junit.xml",
        "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning",
    )  # fmt: skip
    return result, pytester.path


def test_a_failed_scenario_explains_itself_and_its_report_page_shows_it(
    run: tuple[pytest.RunResult, Path],
) -> None:
    result, root = run
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    (run_id,) = set(re.findall(r"artifacts/report/(\w+)/F01\.html", out))
    failures = {c.get("name"): c.find("failure") for c in ET.parse(root / "junit.xml").iter()}
    plain, waited = failures["test_plain_assertion"], failures["test_failed_wait"]
    assert plain is not None and waited is not None
    # A plain assertion carries both peers' last records and stderr tails, and its page's path.
    for text in (out, str(plain.text)):
        assert "assert None is not None" in text
        assert "lanpeer: lonely" in text and "lanpeer: other" in text
        assert '"event": "peer-connected"' in text  # one of lonely's records
        assert "--- stderr tail" in text
        assert f"artifacts/report/{run_id}/F01.html" in text
    assert f"artifacts/report/{run_id}/F02.html" in str(waited.text)

    # The report: failures linked at their failure; each page opens there, with the lanes.
    report = root / "artifacts" / "report" / run_id
    index = (report / "index.html").read_text()
    assert '<a href="F01.html#explanation">F01</a>' in index
    assert '<a href="../../../junit.xml">JUnit XML</a>' in index
    plain = (report / "F01.html").read_text()
    assert 'id="failure"' in plain and "assert None is not None" in plain
    assert 'data-lane="lonely"' in plain and 'data-lane="other"' in plain
    assert "lonely connect → other" in plain  # the lab's action, its target named
    waited = (report / "F02.html").read_text()
    assert "failing wait: peer <b>waiter</b>" in waited
    assert "waiting for event download-finished where None" in waited

    # The JUnit XML names the run, so a soak (harness/soak.py) finds each failure's page.
    assert flakes.read_junit((root / "junit.xml").read_text()) == (
        run_id,
        {"F01": "failed", "F02": "failed"},
    )
    assert (root / flakes.page_path(run_id, "F02")).read_text() == waited
