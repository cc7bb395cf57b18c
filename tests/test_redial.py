"""A peer lost without a Goodbye is dialled again until it is back; a peer that said Goodbye is
not; and an idle mesh keeps its peers (keep-alive pings are sent and answered)."""

from __future__ import annotations

import asyncio

import pytest
from nodes import Start, ready

from peer.mesh import REDIAL_MAX, redial_delay
from peer.protocol import Ping, Pong


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


async def test_two_ends_dialling_each_other_at_once_settle_on_one_link(start: Start) -> None:
    """After a cut both ends redial; the two links cross. Each end keeps the same one (the one
    the smaller peer id dialled), neither sees the other lost, and a request made meanwhile is
    answered (a link replaced under it is asked again on the one kept)."""
    a, c = await ready(await start("a")), await ready(await start("c"))
    since = (len(a.events), len(c.events))
    await asyncio.gather(a.node.links.connect(c.node.addr), c.node.links.connect(a.node.addr))
    await a.wait("peer-connected", peer_id=c.node.peer_id, since=since[0])
    await c.wait("peer-connected", peer_id=a.node.peer_id, since=since[1])
    answers = await asyncio.gather(
        *(a.node.links.request(c.node.peer_id, Ping(a.node.peer_id)) for _ in range(5))
    )
    assert all(isinstance(r, Pong) for r in answers)
    kept_a, kept_c = a.node.links.conns[c.node.peer_id], c.node.links.conns[a.node.peer_id]
    assert not kept_a.closed and not kept_c.closed
    smaller = min(a.node.peer_id, c.node.peer_id)
    assert kept_a.dialled == (a.node.peer_id == smaller)
    assert kept_c.dialled == (c.node.peer_id == smaller)
    assert "peer-lost" not in [e["event"] for e in a.events[since[0] :]]
    assert "peer-lost" not in [e["event"] for e in c.events[since[1] :]]
