"""X11 Lid closed: a source frozen whole (its container paused) mid-download, for longer than
the stale timeout.

The client declares it lost, the download finishes from the other source with an exact copy
and no chunk from the frozen one after the freeze; once thawed, the source meets the mesh again
by itself (the redial) and serves the next download.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.runlog import Figure

RATE = ("--max-upload-rate", str(12 * 1024 * 1024))
STALE = 8.0
SLACK = 3.0
REDIAL_BOUND = 5.0 + 5.0 + 3.0  # README: the redial ceiling, one connect timeout, slack


@pytest.mark.scenario("X11")
def test_x11_lid_closed(lab: Lab, figure: Figure) -> None:
    lid, other = (lab.peer(n, fixture="fixture-alpha", args=RATE) for n in ("lid", "other"))
    client = lab.peer("client")
    client.connect(lid, other)

    start = client.begin_download("alienswarm", lid, other)
    fault = lab.nemesis.pause(lid)
    frozen = client.mark()

    # The fault bit: the freeze outlasted the stale timeout (the client declared it lost).
    lost = client.expect("peer-lost", where={"peer_id": lid.peer_id}, since=frozen,
                         timeout=STALE + SLACK)  # fmt: skip
    assert lost["reason"] == "timeout"
    figure("lost_after_s", round(lost["_t"] - fault.started, 1))
    client.expect("download-finished", where={"game_id": "alienswarm"}, since=start, timeout=120)
    end = client.mark()
    client.no_event_since("download-failed", since=start, until=end)
    late = client.events("download-chunk-finished", since=frozen, until=end,
                         where={"peer_addr": lid.addr})  # fmt: skip
    assert not late, f"a chunk from the frozen source counted: {late}"
    assert_same(client.manifest("alienswarm"), other.manifest("alienswarm"), "alienswarm")

    thawed = client.mark()
    fault.heal()
    assert fault.healing is not None
    met = client.expect("peer-connected", where={"peer_id": lid.peer_id}, since=thawed,
                        timeout=REDIAL_BOUND)  # fmt: skip
    figure("met_again_after_thaw_s", round(met["_t"] - fault.healing, 1))

    client.forget("alienswarm")
    again = client.download("alienswarm")
    assert again.outcome == "download-finished", again.terminal
    delivered = client.delivered(again)
    assert delivered.get(lid.addr, 0) > 0, f"the thawed source served nothing: {delivered}"
    assert_same(client.manifest("alienswarm"), lid.manifest("alienswarm"), "alienswarm")
