"""Identity bound to a key, between whole nodes: a spoofed id is refused, a copied state dir
is reported on every side and never merged, and a restart is still one entry (S11)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from nodes import Peer, Start, ready

from peer.errors import PeerError
from peer.probe import probe
from peer.protocol import DuplicateIdentity, ErrorReply, Hello, Ok, Ping, Request


async def refused(coro: Any) -> PeerError:
    with pytest.raises(PeerError) as err:
        await coro
    return err.value


def spoofing(peer: Peer, victim_id: str) -> None:
    """Make `peer` introduce itself as `victim_id`, which its key does not prove."""
    honest = peer.node._introduce
    peer.node.links._introduce = lambda: {**honest(), "peer_id": victim_id}


async def test_a_probe_claiming_another_peers_id_is_refused(start: Start) -> None:
    a, victim = await ready(await start("a")), await ready(await start("victim"))
    await a.run("connect", addr=victim.node.addr)
    err = await refused(probe(a.node.addr, None, None, claim=victim.node.peer_id))
    assert err.code == "identity-mismatch", err
    event = await a.wait("peer-refused", peer_id=victim.node.peer_id)
    assert event["code"] == "identity-mismatch" and "holds the key of" in event["reason"]
    [record] = a.node.links.table.peers.values()
    assert (record.peer_id, record.addr) == (victim.node.peer_id, victim.node.addr)


@pytest.mark.parametrize("spoofer_dials", [True, False], ids=["hello", "hello-ack"])
async def test_a_spoofed_id_is_refused_in_either_direction(
    start: Start, spoofer_dials: bool
) -> None:
    a, m, victim = [await ready(await start(n)) for n in ("a", "m", "victim")]
    await a.run("connect", addr=victim.node.addr)
    spoofing(m, victim.node.peer_id)
    dialler, answerer = (m, a) if spoofer_dials else (a, m)
    err = await refused(dialler.run("connect", addr=answerer.node.addr))
    assert err.code == "identity-mismatch", err
    await a.wait("peer-refused", peer_id=victim.node.peer_id, code="identity-mismatch")
    assert [(p.peer_id, p.addr) for p in a.node.links.table.peers.values()] == [
        (victim.node.peer_id, victim.node.addr)
    ], "the victim's entry is untouched"
    assert "peer-connected" not in [e["event"] for e in a.events if e.get("addr") == m.node.addr]


async def clones(start: Start, tmp_path: Path) -> tuple[Peer, Peer]:
    original = await ready(await start("original"))
    shutil.copytree(tmp_path / "original" / "state", tmp_path / "clone" / "state")
    clone = await ready(await start("clone"))
    assert clone.node.peer_id == original.node.peer_id
    return original, clone


@pytest.mark.parametrize("observer_dials", [True, False], ids=["observer-dials", "clone-dials"])
async def test_a_copied_state_dir_is_reported_everywhere_and_never_merged(
    start: Start, tmp_path: Path, observer_dials: bool
) -> None:
    original, clone = await clones(start, tmp_path)
    observer = await ready(await start("observer"))
    await observer.run("connect", addr=original.node.addr)
    dialling = (
        observer.run("connect", addr=clone.node.addr)
        if observer_dials
        else clone.run("connect", addr=observer.node.addr)
    )
    assert (await refused(dialling)).code == "duplicate-identity"
    pid, seen_by = original.node.peer_id, observer.node.peer_id
    addrs = [original.node.addr, clone.node.addr]
    for peer in (observer, original, clone):
        event = await peer.wait("duplicate-identity", peer_id=pid)
        assert (event["addrs"], event["reported_by"]) == (addrs, seen_by), (peer.name, event)
    [record] = observer.node.links.table.peers.values()
    assert (record.peer_id, record.addr) == (pid, original.node.addr), "the first one is kept"
    assert await observer.run("list-peers") == [record.to_json()]
    if observer_dials:  # the clone had recorded the observer's Hello: the link's close drops it
        await clone.wait("peer-lost", peer_id=seen_by, timeout=5)
    assert clone.node.links.table.peers == {}


async def test_a_clone_meeting_its_original_is_reported_by_both(
    start: Start, tmp_path: Path
) -> None:
    original, clone = await clones(start, tmp_path)
    assert (await refused(clone.run("connect", addr=original.node.addr))).code == (
        "duplicate-identity"
    )
    for peer in (original, clone):
        event = await peer.wait("duplicate-identity", peer_id=original.node.peer_id)
        assert event["addrs"] == [original.node.addr, clone.node.addr], (peer.name, event)
        assert event["reported_by"] == original.node.peer_id
        assert peer.node.links.table.peers == {}


async def test_a_known_id_whose_old_link_is_silent_is_a_restart_and_replaces_the_entry(
    start: Start, tmp_path: Path
) -> None:
    """S11 after a kill: the old link is still open but answers nothing, so the newcomer with
    the same key is the same peer restarted, not a clone (a copied state dir stands in for the
    restart, as the original still holds its state dir's lock)."""
    original, clone = await clones(start, tmp_path)
    observer = await ready(await start("observer"))
    await observer.run("connect", addr=original.node.addr)
    handle = original.node.links.handle

    async def killed(conn: Any, request: Request) -> Any:
        if isinstance(request, Ping):
            await asyncio.Event().wait()  # a killed process answers nothing
        return await handle(conn, request)

    for conn in original.node.links.conns.values():
        conn._on_request = killed
    await observer.run("connect", addr=clone.node.addr)
    [record] = observer.node.links.table.peers.values()
    assert (record.peer_id, record.addr) == (clone.node.peer_id, clone.node.addr)
    assert "duplicate-identity" not in observer.names() + clone.names()


async def test_hearsay_about_a_third_peer_is_not_taken_at_face_value(start: Start) -> None:
    """Any introduced peer could otherwise make us raise an alarm about any other."""
    a, m, victim = [await ready(await start(n)) for n in ("a", "m", "victim")]
    await a.run("connect", addr=victim.node.addr)
    await m.run("connect", addr=a.node.addr)
    smear = DuplicateIdentity(victim.node.peer_id, (victim.node.addr, m.node.addr))
    reply = await m.node.links.request(a.node.peer_id, smear)
    assert isinstance(reply, ErrorReply) and reply.code == "unauthorised", reply
    about_itself = DuplicateIdentity(m.node.peer_id, (m.node.addr, "127.0.0.1:9"))
    assert isinstance(await m.node.links.request(a.node.peer_id, about_itself), Ok)
    await a.wait("duplicate-identity", peer_id=m.node.peer_id, reported_by=m.node.peer_id)
    alarms = [e for e in a.events + victim.events if e["event"] == "duplicate-identity"]
    assert [e["peer_id"] for e in alarms] == [m.node.peer_id], alarms


async def test_a_hello_answered_with_hearsay_raises_no_alarm(start: Start) -> None:
    """The reply to our Hello may only tell us that *we* are a duplicate."""
    a, m, victim = [await ready(await start(n)) for n in ("a", "m", "victim")]
    handle = m.node.links.handle
    smear = DuplicateIdentity(victim.node.peer_id, (victim.node.addr, m.node.addr))

    async def lying(conn: Any, request: Request) -> Any:
        return smear if isinstance(request, Hello) else await handle(conn, request)

    assert m.node.links.endpoint is not None
    m.node.links.endpoint._on_request = lying
    assert (await refused(a.run("connect", addr=m.node.addr))).code == "duplicate-identity"
    assert "duplicate-identity" not in a.names()
