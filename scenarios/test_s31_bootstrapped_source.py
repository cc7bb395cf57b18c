"""S31 A peer that downloaded a game serves it in the same session, after the origin left."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S31")
def test_s31_bootstrapped_peer_becomes_source(lab: Lab) -> None:
    origin = lab.peer("origin", fixture="fixture-alpha")
    expected = origin.manifest("alienswarm")
    client = lab.peer("client")
    client.connect(origin)
    assert client.download("alienswarm").outcome == "download-finished"

    mark = client.mark()
    origin.send("shutdown")
    client.expect("peer-lost", where={"peer_id": origin.peer_id}, since=mark)

    third = lab.peer("third")
    third.connect(client)
    w = third.download("alienswarm")
    assert w.outcome == "download-finished", w.terminal
    assert_same(third.manifest("alienswarm"), expected, "third vs the original source")
