"""A peer lost without a Goodbye is dialled again until it is back; a peer that said Goodbye is
not; and an idle mesh keeps its peers (keep-alive pings are sent and answered)."""

from __future__ import annotations

import asyncio

import pytest
from nodes import Start, ready

from peer.mesh import REDIAL_MAX, redial_delay


def test_redial_backs_off_to_a_ceiling() -> None:
    assert [redial_delay(n) for n in range(6)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert redial_delay(10_000) == REDIAL_MAX


async def test_a_peer_lost_by_timeout_is_dialled_again_without_a_connect(start: Start) -> None:
    a, c = await ready(await start("a")), await ready(await start("c"))
    await c.run("connect", addr=a.node.addr)
    met = await a.wait("peer-connected", peer_id=c.node.peer_id)
    since = len(a.events)
    a.node.links.drop(c.node.peer_id, "timeout")  # what the liveness rule does to a silent peer
    lost = await a.wait("peer-lost", peer_id=c.node.peer_id, since=since)
    assert lost["reason"] == "timeout"
    back = await a.wait("peer-connected", peer_id=c.node.peer_id, since=since, timeout=15)
    assert back["addr"] == met["addr"]
    assert c.node.peer_id in a.node.links.table.peers
    await c.wait("peer-connected", peer_id=a.node.peer_id, count=2)  # c sees a again too


async def test_a_peer_that_said_goodbye_is_not_dialled_again(start: Start) -> None:
    a, c = await ready(await start("a")), await ready(await start("c"))
    await c.run("connect", addr=a.node.addr)
    await a.wait("peer-connected", peer_id=c.node.peer_id)
    await c.node.shutdown()
    lost = await a.wait("peer-lost", peer_id=c.node.peer_id)
    assert lost["reason"] == "goodbye"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("redial-")]


async def test_an_idle_mesh_keeps_its_peers_through_several_stale_timeouts(start: Start) -> None:
    timing = {"ping_interval": 0.2, "stale_timeout": 0.6}
    a, c = await ready(await start("a", **timing)), await ready(await start("c", **timing))
    await c.run("connect", addr=a.node.addr)
    await a.wait("peer-connected", peer_id=c.node.peer_id)
    since = (len(a.events), len(c.events))
    with pytest.raises(AssertionError, match="no 1x peer-lost"):
        await a.wait("peer-lost", since=since[0], timeout=2.0)  # over three stale timeouts
    assert "peer-lost" not in [e["event"] for e in c.events[since[1] :]]
