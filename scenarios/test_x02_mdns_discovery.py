"""X02 (beyond upstream) mDNS discovery: peers on one LAN find each other with no `connect`.

Three peers announce and browse `_lanpeer._udp.local.` on the scenario's Docker bridge; a fourth
runs with `--no-mdns` and must never be dialled. Of two peers that hear each other only one
dials, so each pair ends with exactly one peer entry on each side.
"""

import pytest

from harness.lab import Lab

pytestmark = pytest.mark.requires_docker(
    reason="mDNS runs only inside a Docker bridge: on the host it would reach the real network",
)


@pytest.mark.scenario("X02")
def test_x02_mdns_discovery(lab: Lab) -> None:
    deaf = lab.peer("deaf", fixture="fixture-conflict")  # --no-mdns: invisible, never dials
    peers = [
        lab.peer("alpha", fixture="fixture-alpha", mdns=True),
        lab.peer("bravo", fixture="fixture-bravo", mdns=True),
        lab.peer("charlie", mdns=True),
    ]
    ids = {p.peer_id for p in peers}
    for me in peers:
        assert me.send("wait-peers", count=2, timeout_s=30, timeout=40) == {"peer_count": 2}
        listed = {p["peer_id"]: p["addr"] for p in me.list_peers()}
        assert set(listed) == ids - {me.peer_id}, "every other announcing peer, never self"
        assert all(listed[p.peer_id] == p.addr for p in peers if p is not me)
    charlie = peers[2]
    assert charlie.list_games()["ggoo"]["peer_count"] == 2, "libraries came with discovery"
    for me in peers:
        me.no_event_since("peer-connected", where={"peer_id": deaf.peer_id})
        me.no_event_since("peer-discovered", where={"peer_id": deaf.peer_id})
    deaf.no_event_since("peer-connected")
    assert deaf.list_peers() == []
