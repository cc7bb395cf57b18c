"""Whole nodes in one event loop on 127.0.0.1: the middle of the peer, without a harness.

Each test starts two or three real `Node`s (real QUIC links, real fast lane, real files in
tmp_path) and drives them with the same commands stdin would, so the wiring between links,
library, operations and the fetcher is tested in seconds, and a mutant in it is caught here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from nodes import CATALOG, CHUNK, Start, ready

from peer.errors import PeerError
from peer.protocol import ErrorReply, GameFiles, GetGame, HelloAck, Ok


def write_game(games: Path, game_id: str, version: str, size: int, seed: int = 1) -> None:
    root = games / game_id
    root.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(f"{game_id}-{seed}".encode()).digest()
    (root / f"{game_id}.eti").write_bytes((block * (size // 32 + 1))[:size])
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "small.bin").write_bytes(block[:7])
    (root / "version.ini").write_text(version + "\n")


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "local" not in p.relative_to(root).parts
    }


async def test_a_two_source_download_uses_both_and_copies_every_byte(start: Start) -> None:
    a, b, c = await start("a"), await start("b"), await start("c")
    for source in (a, b):
        write_game(source.games, "bfbc2", CATALOG["bfbc2"], 10 * CHUNK + 5)
    for peer in (a, b, c):
        await ready(peer)
    for source in (a, b):
        await c.run("connect", addr=source.node.addr)
    accepted = await c.run("download", game_id="bfbc2", install=False)
    assert sorted(accepted["sources"]) == sorted([a.node.addr, b.node.addr])
    done = await c.wait("download-finished", game_id="bfbc2")
    assert set(done["bytes_per_source"]) == {a.node.addr, b.node.addr}
    assert all(n > 0 for n in done["bytes_per_source"].values()), done["bytes_per_source"]
    assert digest_tree(c.games / "bfbc2") == digest_tree(a.games / "bfbc2")
    games = {g["game_id"]: g for g in (await c.run("status"))["local_games"]}
    assert games["bfbc2"]["downloaded"] and not games["bfbc2"]["installed"]
    # A finished download is advertised: a peer that connects now sees it.
    d = await ready(await start("d"))
    await d.run("connect", addr=c.node.addr)
    rows = {r["game_id"]: r for r in await d.run("list-games")}
    assert c.node.peer_id in rows["bfbc2"]["peers"]


async def test_cancel_stops_the_transfer_and_removes_its_files(start: Start) -> None:
    a = await start("a", max_upload_rate=256 * 1024)
    c = await start("c")
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 8 * CHUNK)
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)
    await c.run("download", game_id="bfbc2")
    await c.wait("download-chunk-finished", game_id="bfbc2")
    assert await c.run("cancel-download", game_id="bfbc2") == {
        "game_id": "bfbc2",
        "cancelled": True,
    }
    # The answer came after the cleanup: nothing is left, and the operation has ended.
    assert not (c.games / "bfbc2").exists()
    assert "download-cancelled" in c.names()
    assert "download-failed" not in c.names() and "install-begin" not in c.names()
    assert (await c.run("status"))["active_operations"] == []
    with pytest.raises(PeerError) as err:
        await c.run("cancel-download", game_id="bfbc2")
    assert err.value.code == "not-downloading"


async def test_a_fast_lane_request_missing_a_field_gets_a_refusal(start: Start) -> None:
    a = await ready(await start("a"))
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 100)
    request = {"type": "get-chunk", "token": a.node.data_token, "game_id": "bfbc2", "offset": 0}
    for broken in (
        json.dumps(request).encode(),  # no path, no length
        json.dumps({**request, "path": None, "length": 4}).encode(),
        json.dumps({**request, "path": "bfbc2.eti", "length": 4}).encode()[:-1],  # not JSON
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", a.node.data_port)
        writer.write(broken + b"\n")
        async with asyncio.timeout(5):
            reply = json.loads(await reader.readline())
        writer.close()
        assert reply["type"] == "error" and reply["code"] == "bad-message", reply


async def test_a_control_message_with_wrong_types_gets_a_refusal_not_silence(
    start: Start,
) -> None:
    a, c = await start("a"), await start("c")
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 100)
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)
    conn = c.node.links.conns[a.node.peer_id]
    pid = c.node.peer_id
    for hostile in (
        {"type": "library-delta", "peer_id": pid, "from_rev": 0, "to_rev": 1, "removed": 7},
        {"type": "library-delta", "peer_id": pid, "from_rev": 0, "to_rev": 1, "removed": "ab"},
        {"type": "get-game", "game_id": 5},
        {"type": "get-game"},
    ):
        reply = await conn.request(json.dumps(hostile).encode(), timeout=3)
        assert isinstance(reply, ErrorReply) and reply.code == "bad-message", hostile
    # The library was not touched by the string iterated as IDs ("a", "b" removed).
    assert a.node.links.table.peers[pid].library == {}
    assert isinstance(await conn.request(GetGame("bfbc2", CHUNK)), GameFiles)


async def test_a_request_handler_crash_is_answered_as_internal(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, c = await start("a"), await start("c")
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 100)
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)

    def explode(root: Path) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(a.node.serving._descriptors, "describe", explode)
    reply = await c.node.links.request(a.node.peer_id, GetGame("bfbc2", CHUNK))
    assert isinstance(reply, ErrorReply) and reply.code == "internal"


async def test_an_install_that_crashes_ends_with_install_failed(start: Start) -> None:
    a = await start("a")
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 100)
    await ready(a)

    class Exploding:
        def unpack(self, archives: list[Path], dest: Path) -> None:
            raise RuntimeError("unpacker bug")

    a.node.unpacker = Exploding()
    await a.run("install", game_id="bfbc2")
    failed = await a.wait("install-failed", game_id="bfbc2")
    assert failed["code"] == "internal" and "unpacker bug" in failed["reason"]
    assert (await a.run("status"))["active_operations"] == []
    assert not (a.games / "bfbc2" / "local").exists()
    assert not (a.games / "bfbc2" / ".local.installing").exists()


async def test_only_catalog_version_peers_are_listed_and_used(start: Start) -> None:
    good, stale, c = await start("good"), await start("stale"), await start("c")
    write_game(good.games, "cnc4", CATALOG["cnc4"], 3 * CHUNK)
    write_game(stale.games, "cnc4", "20240101", 3 * CHUNK, seed=2)
    for peer in (good, stale, c):
        await ready(peer)
    for source in (good, stale):
        await c.run("connect", addr=source.node.addr)
    rows = {r["game_id"]: r for r in await c.run("list-games")}
    assert rows["cnc4"]["peers"] == [good.node.peer_id] and rows["cnc4"]["peer_count"] == 1
    accepted = await c.run("download", game_id="cnc4", install=False)
    assert accepted["sources"] == [good.node.addr]
    done = await c.wait("download-finished", game_id="cnc4")
    assert list(done["bytes_per_source"]) == [good.node.addr]
    assert digest_tree(c.games / "cnc4") == digest_tree(good.games / "cnc4")


async def test_hello_and_goodbye_keep_the_table_true(start: Start) -> None:
    a, c = await ready(await start("a")), await ready(await start("c"))
    await c.run("connect", addr=a.node.addr)
    await a.wait("peer-connected", peer_id=c.node.peer_id)
    with pytest.raises(PeerError) as err:
        await c.run("connect", addr=c.node.addr)
    assert err.value.code == "self-connect"
    ack = await c.node.links.conns[a.node.peer_id].request(
        json.dumps({"type": "ping", "peer_id": c.node.peer_id}).encode()
    )
    assert not isinstance(ack, (HelloAck, Ok, ErrorReply))
    await c.node.shutdown()
    lost = await a.wait("peer-lost", peer_id=c.node.peer_id)
    assert lost["reason"] == "goodbye"


async def test_a_newer_version_than_the_catalog_is_no_source_either(start: Start) -> None:
    newer, c = await start("newer"), await start("c")
    write_game(newer.games, "cnc4", "20990101", CHUNK)
    await ready(newer)
    await ready(c)
    await c.run("connect", addr=newer.node.addr)
    assert await c.run("list-games") == []
    with pytest.raises(PeerError) as err:
        await c.run("download", game_id="cnc4")
    assert err.value.code == "no-peers"
    await c.wait("no-peers-have-game", game_id="cnc4")


async def test_install_state_and_operations_reach_peers(start: Start) -> None:
    a, c = await start("a"), await start("c")
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 100)
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)

    def advertised() -> Any:
        return c.node.links.table.peers[a.node.peer_id].library.get("bfbc2")

    assert advertised() is not None and not advertised().installed
    mark = len(c.events)
    await a.run("install", game_id="bfbc2")
    await a.wait("install-finished", game_id="bfbc2")
    # While the install ran, the game was withdrawn; afterwards it is back, installed.
    await c.wait("peer-library-changed", since=mark, count=2)
    changes = [e for e in c.events[mark:] if e["event"] == "peer-library-changed"]
    assert changes[0]["removed"] == ["bfbc2"]
    assert "bfbc2" in changes[1]["added"]
    assert advertised() is not None and advertised().installed


async def test_a_restarted_source_is_used_at_its_new_lane_address_and_token(
    start: Start, tmp_path: Path
) -> None:
    a, c = await start("a"), await start("c")
    write_game(a.games, "bfbc2", CATALOG["bfbc2"], 3 * CHUNK)
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)
    old_port, old_token, peer_id = a.node.data_port, a.node.data_token, a.node.peer_id
    await a.node.shutdown()
    await c.wait("peer-lost", peer_id=peer_id)
    again = await ready(await start("a"))  # same state dir: same identity
    assert again.node.peer_id == peer_id and again.node.data_token != old_token
    await c.run("connect", addr=again.node.addr)
    record = c.node.links.table.peers[peer_id]
    assert (record.data_port, record.data_token) == (again.node.data_port, again.node.data_token)
    assert record.data_port != old_port or record.data_token != old_token
    await c.run("download", game_id="bfbc2", install=False)
    await c.wait("download-finished", game_id="bfbc2")


async def test_self_connect_through_another_address_is_refused_after_hello(
    start: Start,
) -> None:
    """A host name or another interface of ours passes the address check; Hello catches it."""
    a = await ready(await start("a"))
    real = a.node.addr
    a.node.links.addr = "192.0.2.1:9"  # as if we knew ourselves by another address only
    with pytest.raises(PeerError) as err:
        await a.run("connect", addr=real)
    assert err.value.code == "self-connect"
    assert a.node.links.table.peers == {}


async def test_sources_tuned_to_other_chunk_sizes_still_agree_on_the_same_bytes(
    start: Start,
) -> None:
    """The vote is on content: each source describes the root in the receiver's chunk size."""
    a, b = await start("a", chunk_size=CHUNK), await start("b", chunk_size=4 * CHUNK)
    c = await start("c", chunk_size=2 * CHUNK)
    for source in (a, b):
        write_game(source.games, "bfbc2", CATALOG["bfbc2"], 9 * CHUNK + 3)
    for peer in (a, b, c):
        await ready(peer)
    for source in (a, b):
        await c.run("connect", addr=source.node.addr)
    await c.run("download", game_id="bfbc2", install=False)
    files = await c.wait("got-game-files", game_id="bfbc2")
    assert len(files["sources"]) == 2 and files["rejected_sources"] == [], files
    done = await c.wait("download-finished", game_id="bfbc2")
    assert done["chunks"] == 5 + 1 + 1, "the receiver's 2-CHUNK layout (and two small files)"
    assert digest_tree(c.games / "bfbc2") == digest_tree(a.games / "bfbc2")


async def test_set_game_dir_refuses_a_dir_holding_the_state_dir(start: Start) -> None:
    a = await ready(await start("a"))
    before = a.node.library.games_dir
    for path in (a.node.settings.state_dir.parent, a.node.settings.state_dir / "games"):
        with pytest.raises(PeerError) as err:
            await a.run("set-game-dir", path=str(path))
        assert err.value.code == "bad-path", err.value
    assert a.node.library.games_dir == before
    other = before.parent / "elsewhere"
    assert (await a.run("set-game-dir", path=str(other)))["games_dir"] == str(other)
