"""S18 Mid-download source drop with redundancy: the survivor finishes the download.

Both sources are throttled (`--max-upload-rate`), so at the kill no chunk of the victim has
completed: "mid-download" is a fact, not a race. Every chunk must then come from the survivor.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

RATE = ("--max-upload-rate", str(24 * 1024 * 1024))


@pytest.mark.scenario("S18")
def test_s18_redundant_source_killed_mid_download(lab: Lab) -> None:
    survivor = lab.peer("survivor", fixture="fixture-alpha", args=RATE)
    victim = lab.peer("victim", fixture="fixture-alpha", args=RATE)
    client = lab.peer("client")
    client.connect(survivor, victim)

    start = client.begin_download("alienswarm", survivor, victim)
    victim.kill()
    killed_at = client.mark()
    client.expect("download-finished", where={"game_id": "alienswarm"}, since=start, timeout=240)
    end = client.mark()

    client.no_event_since("download-failed", since=start, until=end)
    chunks = client.events("download-chunk-finished", since=start, until=end)
    assert {c["peer_addr"] for c in chunks} == {survivor.addr}, "victim finished no chunk"
    failed = client.events("download-chunk-failed", since=start, until=end)
    assert failed and {f["peer_addr"] for f in failed} == {victim.addr}
    retried = {(f["path"], f["offset"]) for f in failed}
    after_kill = {
        (c["path"], c["offset"])
        for c in client.events("download-chunk-finished", since=killed_at, until=end)
    }
    assert retried <= after_kill, "the victim's chunks were fetched again from the survivor"
    assert_same(client.manifest("alienswarm"), survivor.manifest("alienswarm"), "alienswarm")
