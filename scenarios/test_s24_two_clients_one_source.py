"""S24 Two clients pull the same large game from one source at once; both match it."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

RATE = 96 * 1024 * 1024


@pytest.mark.scenario("S24")
def test_s24_two_clients_pull_from_one_source(lab: Lab) -> None:
    # Throttled, so that both transfers overlap whatever the machine's load.
    source = lab.peer("source", fixture="fixture-alpha", args=("--max-upload-rate", str(RATE)))
    clients = [lab.peer("c1"), lab.peer("c2")]
    for client in clients:
        client.connect(source)
    marks = [c.mark() for c in clients]
    for client in clients:
        client.send("download", game_id="alienswarm", install=False)
    begun = [c.expect("download-begin", since=m) for c, m in zip(clients, marks, strict=True)]
    assert source.status()["peer_count"] == 2, "the source answers while serving"
    finished = [
        c.expect("download-finished", where={"game_id": "alienswarm"}, since=m, timeout=240)
        for c, m in zip(clients, marks, strict=True)
    ]
    for client, mark in zip(clients, marks, strict=True):
        client.no_event_since("download-failed", since=mark)
    # Concurrent, not one after the other: both began before either finished.
    assert max(b["_t"] for b in begun) < min(f["_t"] for f in finished)
    expected = source.manifest("alienswarm")
    for client in clients:
        assert_same(client.manifest("alienswarm"), expected, f"{client.name} vs source")
    assert source.status()["active_operations"] == []
