"""The QUIC layer alone: mutual TLS proves each end's id, and what a host can make us buffer
is bounded per stream, per connection and, tighter, before it introduces itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from peer import endpoint, quic
from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.identity import Identity, load_or_create_identity
from peer.protocol import (
    MAX_GAMES,
    MAX_INTRO_BYTES,
    PROTOCOL_VERSION,
    ErrorReply,
    GameSummary,
    Hello,
    Ok,
    Ping,
    Reply,
    Request,
    encode,
)
from peer.quic import ControlConnection

WAIT = 5.0  # for a close we expect; strangers get 60 s, so only a bound closes them early


class Server:
    def __init__(self, identity: Identity, stranger_time: float = 60.0) -> None:
        self.conns: list[ControlConnection] = []
        self.endpoint = ControlEndpoint(identity, self.answer, lambda _c: None, stranger_time, 60)
        self.port = 0

    async def answer(self, conn: ControlConnection, request: Request) -> Reply:
        if isinstance(request, Hello):
            conn.peer_id = request.peer_id  # introduced, as links.py does
        self.conns.append(conn)
        return Ok()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    s = Server(load_or_create_identity(tmp_path / "server"))
    s.port = await s.endpoint.listen("127.0.0.1", 0)
    yield s
    s.endpoint.close()


async def dial(tmp_path: Path, server: Server, name: str = "client") -> ControlConnection:
    identity = load_or_create_identity(tmp_path / name)
    endpoint = ControlEndpoint(identity, server.answer, lambda _c: None, 5.0, 60.0)
    return await endpoint.connect("127.0.0.1", server.port, timeout=5.0)


def hello(peer_id: str) -> Hello:
    return Hello(PROTOCOL_VERSION, peer_id, "127.0.0.1:9", 9, "t", 0, ())


async def closed(conn: ControlConnection) -> bool:
    """Whether the other end closes the connection (within `WAIT`)."""
    try:
        async with asyncio.timeout(WAIT):
            await conn.wait_closed()
    except TimeoutError:
        return False
    return True


async def answers(conn: ControlConnection) -> bool:
    try:
        return isinstance(await conn.request(Ping("0" * 32), timeout=WAIT), Ok)
    except PeerError:
        return False


async def test_both_ends_prove_their_ids_in_the_handshake(tmp_path: Path, server: Server) -> None:
    conn = await dial(tmp_path, server)
    await conn.request(hello(load_or_create_identity(tmp_path / "client").peer_id))
    [served] = server.conns
    assert conn.proven_peer_id == load_or_create_identity(tmp_path / "server").peer_id
    assert served.proven_peer_id == load_or_create_identity(tmp_path / "client").peer_id


def send_open(conn: ControlConnection, size: int, streams: int = 1) -> None:
    for _ in range(streams):
        stream_id = conn._quic.get_next_available_stream_id()
        conn._quic.send_stream_data(stream_id, b" " * size, end_stream=False)
    conn.transmit()


async def test_a_stranger_may_not_send_more_than_an_introduction(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quic, "MAX_INTRO_BYTES", 64 * 1024)  # the rule, at a quick size
    conn = await dial(tmp_path, server)
    send_open(conn, 40 * 1024)
    assert await answers(conn), "within its bound"
    send_open(conn, 30 * 1024)  # 70 KiB buffered at once
    assert await closed(conn)


async def test_a_stranger_may_not_open_many_streams(tmp_path: Path, server: Server) -> None:
    conn = await dial(tmp_path, server)
    send_open(conn, 10, streams=quic.MAX_STRANGER_STREAMS + 1)
    assert await closed(conn)


async def test_a_stranger_that_does_not_introduce_itself_is_closed(tmp_path: Path) -> None:
    server = Server(load_or_create_identity(tmp_path / "server"), stranger_time=1.0)
    server.port = await server.endpoint.listen("127.0.0.1", 0)
    silent = await dial(tmp_path, server)
    introduced = await dial(tmp_path, server, "introduced")
    await introduced.request(hello(load_or_create_identity(tmp_path / "introduced").peer_id))
    assert await closed(silent)
    assert await answers(introduced), "an introduced connection stays"


async def dial_from(tmp_path: Path, server: Server, host: str, name: str) -> ControlConnection:
    """A connection from another loopback address: another remote host, as the server sees it."""
    identity = load_or_create_identity(tmp_path / name)
    endpoint = ControlEndpoint(identity, server.answer, lambda _c: None, 5.0, 60.0)
    return await endpoint.connect("127.0.0.1", server.port, timeout=5.0, local_host=host)


async def test_one_host_may_hold_only_a_few_strangers(tmp_path: Path, server: Server) -> None:
    """Its newest connection displaces its oldest: re-opening only evicts its own."""
    per_host = endpoint.MAX_STRANGERS_PER_HOST
    conns = [await dial(tmp_path, server, f"c{i}") for i in range(per_host + 1)]
    assert await closed(conns[0]), "the host's oldest stranger made way"
    assert all([await answers(c) for c in conns[1:]]), "the newer ones are admitted"


async def test_strangers_from_one_host_never_lock_out_another(
    tmp_path: Path, server: Server
) -> None:
    """Issue 17 class 3: a host re-opening silent connections; an honest newcomer still gets in
    and can introduce itself, and the total stays bounded."""
    flood = [await dial(tmp_path, server, f"a{i}") for i in range(endpoint.MAX_STRANGERS)]
    honest = await dial_from(tmp_path, server, "127.0.0.2", "honest")
    flood += [await dial(tmp_path, server, f"b{i}") for i in range(endpoint.MAX_STRANGERS)]
    await honest.request(hello(load_or_create_identity(tmp_path / "honest").peer_id))
    assert await answers(honest)
    assert await answers(flood[-1])
    assert await closed(flood[0])


async def test_when_full_the_busiest_host_makes_way(tmp_path: Path, server: Server) -> None:
    per_host = endpoint.MAX_STRANGERS_PER_HOST
    assert 2 * per_host == endpoint.MAX_STRANGERS  # two full hosts fill the table
    first = [await dial_from(tmp_path, server, "127.0.0.2", f"x{i}") for i in range(per_host)]
    second = [await dial_from(tmp_path, server, "127.0.0.3", f"y{i}") for i in range(per_host)]
    lone = await dial_from(tmp_path, server, "127.0.0.4", "lone")
    assert await closed(first[0]), "the oldest stranger of a busiest host made way"
    later = await dial_from(tmp_path, server, "127.0.0.5", "later")
    assert await closed(second[0]), "then the other busiest host's oldest"
    assert all([await answers(c) for c in (lone, later, *first[1:], *second[1:])])


async def test_an_introduced_connection_is_bounded_in_all(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quic, "MAX_CONNECTION_BYTES", 3 * 64 * 1024)  # the rule, at a quick size
    conn = await dial(tmp_path, server)
    await conn.request(hello(load_or_create_identity(tmp_path / "client").peer_id))
    send_open(conn, 64 * 1024, streams=3)  # three open messages, each within its own bound
    assert await answers(conn)
    send_open(conn, 1)
    assert await closed(conn)


def test_the_largest_valid_introduction_fits_a_strangers_bound() -> None:
    game = GameSummary("g" * 64, "v" * 256, True, True, "LocalOnly", 2**62)
    games = tuple(
        msgspec.structs.replace(game, game_id=f"{i:x}" + "g" * 60) for i in range(MAX_GAMES)
    )
    largest = Hello(
        PROTOCOL_VERSION, "f" * 32, "h" * 247 + ":65535", 65535, "t" * 128, 2**62, games
    )
    assert len(encode(largest)) <= MAX_INTRO_BYTES


async def test_a_reply_that_cannot_be_encoded_is_answered_as_internal(
    tmp_path: Path, server: Server
) -> None:
    """Any failure while producing a reply becomes an error reply (issue 17 class 4)."""

    async def unencodable(conn: ControlConnection, request: Request) -> Reply:
        return ErrorReply("not-servable", "caf\udce9.txt")  # a surrogate: not UTF-8

    server.endpoint._on_request = unencodable
    conn = await dial(tmp_path, server)
    reply = await conn.request(Ping("0" * 32), timeout=WAIT)
    assert isinstance(reply, ErrorReply) and reply.code == "internal", reply
    assert "could not be encoded" in reply.message


async def test_a_peer_of_the_previous_protocol_is_refused_at_the_handshake(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A protocol-4 peer (SHA-256 chunk digests) offers ALPN `lanpeer/4`: the handshake fails
    with no common protocol, so not one message, descriptors included, is ever exchanged; and
    the refusing peer goes on serving peers of its own version."""
    monkeypatch.setattr(endpoint, "ALPN", "lanpeer/4")
    with pytest.raises(PeerError) as err:
        await dial(tmp_path, server, "old")
    assert err.value.code == "connect-failed", err.value
    assert server.conns == []
    monkeypatch.undo()
    current = await dial(tmp_path, server)
    assert await answers(current)
