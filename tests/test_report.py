"""The run report's pure rendering (harness/report) and the lab's action recording, no Docker."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from reportdata import SURVIVOR
from reportdata import timeline as sample

from harness.backends.base import LineSink, PeerSpec
from harness.lab import Lab
from harness.peer import PeerHandle
from harness.report import history, pages, svg, timeline

RUN = pages.RunInfo("run1", "docker", "abc1234", "2026-11-25 10:00 UTC", "2")


def test_decode_puts_the_lab_lane_first_and_names_what_the_lab_did() -> None:
    tl = timeline.decode(sample())
    assert [lane.name for lane in tl.lanes] == ["lab", "survivor", "victim", "client"]
    lab = {m.label: m for m in tl.lanes[0].marks}
    assert lab["kill victim"].kind == "kill" and lab["kill victim"].target == "victim"
    assert "client connect → survivor" in lab  # the address is named after its peer
    assert lab["survivor throttled 24 MiB/s"].kind == "throttle"
    assert lab["survivor write cod5/version.ini"].kind == "file"
    assert lab["victim takes survivor's identity"].target == "victim"
    client = {m.label: m.kind for m in tl.lanes[3].marks}
    assert client["download-source-excluded"] == "bad"
    assert client["← connect"] == "result"
    assert tl.end == 16.6


def test_decode_finds_the_failing_wait() -> None:
    failure = timeline.decode(sample()).failure
    assert failure is not None
    assert (failure.t, failure.wait_peer, failure.wait_from) == (16.5, "client", 6.5)
    assert failure.wait_what == "event install-finished where None"
    assert failure.message.startswith("AssertionError")


def test_decode_survives_a_malformed_file() -> None:
    garbage: list[Any] = [None, [], {"peers": []}, {"peers": {"a": 1, "b": {"records": [1]}}}]
    for raw in garbage:
        tl = timeline.decode(raw)
        assert tl.lanes[0].name == "lab"
    broken = timeline.decode({"peers": {"b": {"records": "nope", "addr": 7}}, "lab": [3]})
    assert [lane.name for lane in broken.lanes] == ["lab", "b"]
    for raw in [*garbage, {"peers": {"b": {"records": "nope", "addr": 7}}, "lab": [3]}]:
        html = pages.scenario(RUN, pages.Row("S1", "passed", 0.0), timeline.decode(raw))
        assert 'data-lane="lab"' in html  # still a page


def test_telling_labels_win_a_crowded_spot() -> None:
    crowd = tuple(timeline.Mark(1.0, "local", f"local-{i}", "") for i in range(12))
    marks = (*crowd, timeline.Mark(1.0, "bad", "download-source-excluded", ""))
    rows = svg._rows(marks, svg.fit([1.0]), svg.MAX_ROWS)
    assert rows[-1] == 0 and rows.count(None) == len(marks) - svg.MAX_ROWS


def test_a_multi_source_download_gets_cumulative_bytes_per_source() -> None:
    (plot,) = timeline.decode(sample()).plots
    mib = 2**20
    series = {s.source: s.points for s in plot.series}
    assert (plot.client, plot.game_id) == ("client", "alienswarm")
    assert series["survivor"] == ((5.3, 0), (6.0, 32 * mib), (6.4, 48 * mib))
    assert series["victim"] == ((5.3, 0), (5.5, 32 * mib), (6.4, 32 * mib))  # to the end


def test_a_single_source_download_gets_no_plot() -> None:
    data = sample()
    for r in data["peers"]["client"]["records"]:
        if r.get("event") == "download-begin":
            r["sources"] = [SURVIVOR]
    assert timeline.decode(data).plots == ()


def test_the_scale_squeezes_quiet_gaps_and_keeps_order() -> None:
    scale = svg.fit([0.0, 0.5, 10.0, 10.2])
    xs = [scale.x(t) for t in (0.0, 0.25, 0.5, 5.0, 10.0, 10.2)]
    assert xs == sorted(xs)
    assert scale.x(10.0) - scale.x(0.5) < svg.GAP_PX + 2 * svg.PAD_S * scale.density + 1
    assert scale.x(0.5) - scale.x(0.0) == 0.5 * scale.density
    (gap,) = scale.gaps()
    assert round(gap[2], 2) == round(10.0 - 0.5 - 2 * svg.PAD_S, 2)


def test_the_scenario_page_draws_lanes_marks_and_opens_at_the_failure() -> None:
    row = pages.Row("S99", "failed", 17.0, {"mib_per_s": 30}, "AssertionError: timed out", "E x")
    html = pages.scenario(RUN, row, timeline.decode(sample()))
    for lane in ("lab", "survivor", "victim", "client"):
        assert f'data-lane="{lane}"' in html
    assert html.count('class="mark k-kill"') == 1
    assert 'id="failure"' in html and "scrollLeft" in html
    assert "waiting for event install-finished where None" in html
    assert 'class="explain"' in html and "AssertionError: timed out" in html
    assert '<polyline class="series" data-source="survivor"' in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html  # records escaped
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html), "no network at all"


def test_a_passing_page_has_no_failure() -> None:
    data = sample()
    data["lab"] = [a for a in data["lab"] if a["action"] not in ("wait-timed-out", "failed")]
    html = pages.scenario(RUN, pages.Row("S99", "passed", 6.0), timeline.decode(data))
    assert 'id="failure"' not in html and 'class="explain"' not in html


RUNLOG = """# lanpeer run log

### 2026-11-24 10:00 UTC - 2 passed

- commit `aaa`; backend `docker`; workers `2`; wall 60 s

| scenario | outcome | seconds | figures |
| --- | --- | --- | --- |
| S01 | passed | 1.5 | |
| S99 | passed | 10.0 | mib_per_s=30 |
| not a row | x | y | |

### 2026-11-25 09:00 UTC - 1 failed

| S99 | failed | 20.0 | AssertionError |
"""


def test_history_reads_each_runs_rows_and_ignores_the_rest() -> None:
    runs = history.parse(RUNLOG)
    assert [r.when for r in runs] == ["2026-11-24 10:00", "2026-11-25 09:00"]
    assert runs[0].results == {
        "S01": history.Result("passed", 1.5),
        "S99": history.Result("passed", 10.0),
    }
    assert history.trend(runs, "S01") == [("2026-11-24 10:00", history.Result("passed", 1.5))]
    assert [r.outcome for _, r in history.trend(runs, "S99", last=1)] == ["failed"]


def test_the_index_lists_failures_first_with_links_and_trends() -> None:
    rows = [
        pages.Row("S01", "passed", 1.0),
        pages.Row("S99", "failed", 2.0, reason="AssertionError: <nope>"),
        pages.Row("S20", "skipped", 0.0, reason="needs docker"),
    ]
    runs = [*history.parse(RUNLOG), history.Run("2026-11-26 08:00 (this run)", {
        "S99": history.Result("failed", 2.0)})]  # fmt: skip
    html = pages.index(RUN, rows, runs, {"S01", "S99"}, "../junit.xml")
    order = re.findall(r'<tr data-scenario="(\w+)"', html)
    assert order == ["S99", "S01", "S20"]
    assert '<a href="S99.html#explanation">S99</a>' in html and '<a href="S01.html">S01</a>' in html
    assert "S20.html" not in html  # no timeline, no page, no link
    assert '<a href="../junit.xml">JUnit XML</a>' in html
    assert "&lt;nope&gt;" in html
    assert html.count('class="spark failed"') == 1 and html.count('class="spark passed"') == 2
    assert html.count('class="spark failed now"') == 1  # this run's, marked


class _FakeProcess:
    """A peer that says it is ready when started and answers every command with a result."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sink: LineSink | None = None
        self.ran: list[list[str]] = []

    def start(self, sink: LineSink) -> None:
        self.sink = sink
        sink("stdout", json.dumps({"type": "event", "event": "local-peer-ready", "addr": "a:1",
                                   "peer_id": self.name}))  # fmt: skip

    def write(self, data: bytes) -> None:
        request = json.loads(data)
        assert self.sink is not None
        self.sink("stdout", json.dumps({"type": "result", "id": request["id"], "data": {}}))

    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def pause(self) -> None: ...

    def arm_power_cut(self, syncs: int) -> None: ...
    def resume(self) -> None: ...
    def exited(self) -> bool:
        return True

    def terminate(self, timeout: float) -> int | None:
        return 0

    def exit_status(self) -> int | None:
        return 0

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        self.ran.append(argv)
        return 0, b""

    def path(self, rel: str) -> str:
        return f"/games/{rel}"

    def state_path(self, rel: str) -> str:
        return f"/state/{rel}"


class _FakeBackend:
    name = "fake"
    unrar = "unrar"

    def create(self, spec: PeerSpec) -> _FakeProcess:
        return _FakeProcess(spec.name)

    def scratch(self, name: str) -> str:
        return f"/tmp/{name}"

    def close(self) -> None: ...


def test_the_lab_records_its_own_actions_on_the_timeline() -> None:
    lab = Lab(_FakeBackend())
    source = lab.peer("source", args=("--max-upload-rate", "1048576"))
    client = lab.peer("client")
    client.connect(source)
    source.write("g/version.ini", b"1")
    source.remove("g/old")
    source.run("truncate", "-s", "1", "/games/g/a.eti")
    assert source.exists("g/version.ini")  # a look, not an action
    source.kill()
    source.restart()
    lab.note_failure("AssertionError: boom")
    data = lab.timeline("S99")
    acts = [(a["action"], a.get("peer")) for a in data["lab"]]
    assert acts == [
        ("start", "source"),
        ("throttle", "source"),
        ("start", "client"),
        ("command", "client"),
        ("write", "source"),
        ("remove", "source"),
        ("run", "source"),
        ("kill", "source"),
        ("exited", "source"),  # with its status, judged at teardown (harness/health.py)
        ("restart", "source"),
        ("throttle", "source"),  # a restart keeps the peer's flags
        ("failed", None),
    ]
    times = [a["t"] for a in data["lab"]]
    assert times == sorted(times) and times[0] == 0.0
    assert data["peers"]["client"]["records"][0]["event"] == "local-peer-ready"
    assert data["lab"][3]["args"] == {"addr": "a:1"}


def test_a_timed_out_wait_is_recorded() -> None:
    peer = PeerHandle(_FakeProcess("p"), PeerSpec("p"))
    peer.start()
    with pytest.raises(AssertionError, match="timed out"):
        peer.expect("download-finished", timeout=0.01)
    last: dict[str, Any] = peer.actions[-1]
    assert last["action"] == "wait-timed-out" and "download-finished" in last["what"]


def test_a_fault_is_a_band_over_its_peers_lanes_from_bite_to_heal() -> None:
    raw = sample()
    raw["lab"] += [
        {"t": 5.4, "action": "fault", "fault": 1, "kind": "partition",
         "side_a": ["client"], "side_b": ["victim"]},
        {"t": 6.2, "action": "heal", "fault": 1, "kind": "partition"},
        {"t": 6.3, "action": "fault", "fault": 2, "kind": "pause", "peer": "survivor"},
    ]  # fmt: skip
    tl = timeline.decode(raw)
    cut, lid = tl.bands
    assert (cut.start, cut.end, cut.peers) == (5.4, 6.2, ("client", "victim"))
    assert cut.label == "partition client | victim"
    assert (lid.start, lid.end, lid.peers) == (6.3, tl.end, ("survivor",))  # never healed
    labels = {m.label: m.kind for m in tl.lanes[0].marks}
    assert labels["partition client | victim"] == "fault" and labels["heal partition"] == "heal"
    drawn = svg.swimlanes(tl, svg.fit([0.0, tl.end]))
    assert drawn.count('class="band b-partition"') == 2  # client's lane and victim's
    assert drawn.count('class="band b-pause"') == 1
