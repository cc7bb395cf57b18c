"""S16 Catalog-version fanout with a stale peer present: chunks split over B and C only."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S16")
def test_s16_catalog_version_fanout_with_stale_peer(lab: Lab) -> None:
    stale = lab.peer("stale", fixture="fixture-stale-a")  # alienswarm at an old version
    b = lab.peer("b", fixture="fixture-alpha")
    c = lab.peer("c", fixture="fixture-alpha")
    client = lab.peer("client")
    client.connect(stale, b, c)

    row = client.list_games()["alienswarm"]
    assert row["peer_count"] == 2 and set(row["peers"]) == {b.peer_id, c.peer_id}

    w = client.download("alienswarm", install=False)
    assert w.outcome == "download-finished", w.terminal
    start, end = w.start, w.end
    (files,) = client.events("got-game-files", since=start, until=end)
    assert {s["peer_addr"] for s in files["sources"]} == {b.addr, c.addr}
    chunks = client.events("download-chunk-finished", since=start, until=end)
    assert stale.addr not in {e["peer_addr"] for e in chunks}, "stale peer sent bytes"
    eti = [e for e in chunks if e["path"] == "alienswarm.eti"]
    assert {e["peer_addr"] for e in eti} == {b.addr, c.addr}, "large file fans out over B and C"
    assert_same(client.manifest("alienswarm"), b.manifest("alienswarm"), "alienswarm vs B")
