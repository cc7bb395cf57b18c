"""The real TCP fast lane, both ends, on 127.0.0.1 inside one event loop; and its rate limiter.

The server is `serve_lane` with the real `authorize_chunk` gates over a games dir in tmp_path;
the client is `TcpLane`. Where a test needs a server that misbehaves, or a client that sends
raw bytes, it opens a plain asyncio connection or server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from peer.blocking import in_thread
from peer.budgets import Budgets, Tally
from peer.errors import PeerError
from peer.protocol import (
    MAX_LANE_LINE,
    ChunkHeader,
    ChunkRequest,
    EntryHeader,
    ErrorReply,
    StreamEnd,
    StreamRequest,
    decode_lane_reply,
    encode,
)
from peer.transfer import lane as lane_module
from peer.transfer import senders, upload
from peer.transfer.lane import TcpLane
from peer.transfer.serve import authorize_chunk
from peer.transfer.upload import RateLimiter, SendStream, serve_lane

GAME = "g1"
VERSION = "20250101"
TOKEN = "s3cret-token"
HOST = "127.0.0.1"
MIB = 1024 * 1024
DATA = random.Random(7).randbytes(3 * MIB + 12_345)  # crosses the 1 MiB send/receive slices
LIMIT = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def games(tmp_path: Path) -> Path:
    root = tmp_path / "games" / GAME
    root.mkdir(parents=True)
    (root / "version.ini").write_text(VERSION + "\n")
    (root / "data.bin").write_bytes(DATA)
    (root / "empty.bin").write_bytes(b"")
    return tmp_path / "games"


def refuse(request: object) -> Any:
    raise PeerError("not-servable", "nothing is served in this test")


@pytest.fixture
async def port(games: Path) -> AsyncIterator[int]:
    """A real lane server over `games`, on an ephemeral port."""

    def authorize(request: ChunkRequest) -> tuple[Path, int, int]:
        return authorize_chunk(games, {GAME: VERSION}, frozenset(), TOKEN, request)

    def refuse_streams(request: StreamRequest) -> Any:
        raise PeerError("not-servable", "no streams in this test")

    server = await serve_lane(HOST, 0, authorize, refuse_streams, RateLimiter(None))
    try:
        yield server.port
    finally:
        await server.close()


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """Start a hand-written lane server; returns its port."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, HOST, 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def request(
    path: str = "data.bin", offset: int = 0, length: int = 10, token: str = TOKEN
) -> ChunkRequest:
    return ChunkRequest(token, GAME, path, offset, length)


class Pieces(list[bytes]):
    """A sink that keeps a copy of every slice it is handed."""

    def write(self, data: memoryview | bytes) -> None:
        self.append(bytes(data))


async def fetch(port: int, req: ChunkRequest, idle_timeout: float = LIMIT) -> list[bytes]:
    pieces = Pieces()
    async with asyncio.timeout(LIMIT):
        await TcpLane(idle_timeout=idle_timeout).fetch(HOST, port, req, pieces)
    return pieces


async def refused(port: int, req: ChunkRequest) -> PeerError:
    with pytest.raises(PeerError) as err:
        await fetch(port, req)
    return err.value


async def exchange(port: int, line: bytes) -> tuple[bytes, bytes]:
    """Send raw `line`; return the reply line and whatever follows it until the server closes."""
    async with asyncio.timeout(LIMIT):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(line)
            await writer.drain()
            reply = await reader.readline()
            rest = await reader.read()
        finally:
            writer.close()
    return reply, rest


# -- the real server and client -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 10), (1_000_003, 2_100_000), (0, len(DATA)), (len(DATA) - 1, 1), (len(DATA), 0)],
    ids=["head", "across-slices", "whole", "last-byte", "empty-at-end"],
)
async def test_fetch_yields_exactly_the_asked_range(port: int, offset: int, length: int) -> None:
    pieces = await fetch(port, request(offset=offset, length=length))

    assert b"".join(pieces) == DATA[offset : offset + length]
    assert all(pieces)  # no empty slices
    assert all(len(p) <= lane_module.RECV_SLICE for p in pieces)


async def test_empty_file_is_served_as_zero_bytes(port: int) -> None:
    assert await fetch(port, request("empty.bin", 0, 0)) == []


async def test_a_chunk_is_never_read_through_a_link(port: int, games: Path) -> None:
    """Issue 17, class 5: the gates resolve a link that stays inside the root; the lane still
    sends no byte through it (a link can be swapped to point anywhere after the gates looked)."""
    root = games / GAME
    (root / "link.bin").symlink_to(root / "data.bin")
    err = await refused(port, request(path="link.bin"))
    assert err.code == "not-servable" and "link.bin cannot be read here" in err.message
    assert await fetch(port, request()) != [], "the regular file is still served"


async def test_bad_token_is_unauthorised(port: int) -> None:
    err = await refused(port, request(token="guess"))
    assert err.code == "unauthorised"


async def test_range_past_the_end_is_refused(port: int) -> None:
    err = await refused(port, request(offset=len(DATA) - 5, length=6))
    assert err.code == "bad-message"


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (request(path="missing.bin"), "not-servable"),
        (request(path="version.ini/x"), "not-servable"),
        (ChunkRequest(TOKEN, "other-game", "data.bin", 0, 1), "not-servable"),
    ],
    ids=["missing-file", "file-as-dir", "not-in-catalog"],
)
async def test_gates_refuse_with_their_code(port: int, req: ChunkRequest, code: str) -> None:
    err = await refused(port, req)
    assert err.code == code


def raw(**fields: object) -> bytes:
    """A get-chunk request line built field by field, so it can be wrong in any one of them."""
    body: dict[str, object] = {
        "type": "get-chunk",
        "token": TOKEN,
        "game_id": GAME,
        "path": "data.bin",
        "offset": 0,
        "length": 4,
    }
    for key, value in fields.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body).encode() + b"\n"


INVALID_LINES: list[tuple[bytes, str]] = [
    (raw(length=...), "bad-message"),
    (raw(offset=True), "bad-message"),
    (raw(length=True), "bad-message"),
    (raw(path=None), "bad-message"),
    (raw(offset=-1), "bad-message"),
    (raw(offset="0"), "bad-message"),
    (raw(offset=1.5), "bad-message"),
    (raw(type="chunk"), "bad-message"),
    (raw(extra=1), "bad-message"),
    (raw(game_id="../g1"), "bad-message"),
    (raw(path="../g1/data.bin"), "bad-path"),
    (raw(path="/etc/passwd"), "bad-path"),
    (raw(path="local/x"), "bad-path"),
    (b"[1, 2, 3]\n", "bad-message"),
    (b"not json\n", "bad-message"),
    (b"\n", "bad-message"),
    (b"\xff\xfe\n", "bad-message"),
    (b"{" * 2000 + b"\n", "bad-message"),
    (raw(token="x" * 5000), "bad-message"),  # longer than a lane line
]


@pytest.mark.parametrize(
    ("line", "code"),
    INVALID_LINES,
    # Plain ASCII ids: generated ones for bytes hold escapes that mutmut's re-collection mangles.
    ids=[f"line{i:02d}-{code}" for i, (_, code) in enumerate(INVALID_LINES)],
)
async def test_invalid_request_line_gets_an_error_reply_and_the_server_goes_on(
    port: int, line: bytes, code: str
) -> None:
    reply, rest = await exchange(port, line)

    assert reply.endswith(b"\n"), "the server dropped the connection without a reply"
    answer = decode_lane_reply(reply)
    assert isinstance(answer, ErrorReply)
    assert answer.code == code
    assert rest == b""  # and no chunk bytes after a refusal
    assert b"".join(await fetch(port, request(length=100))) == DATA[:100]


async def test_over_long_path_component_gets_an_error_reply(port: int) -> None:
    reply, _rest = await exchange(port, raw(path="a" * 300))

    assert reply.endswith(b"\n"), "the server dropped the connection without a reply"
    answer = decode_lane_reply(reply)
    assert isinstance(answer, ErrorReply) and answer.code in {"not-servable", "bad-path"}


async def test_good_request_over_a_raw_connection_gets_header_then_exactly_the_bytes(
    port: int,
) -> None:
    reply, rest = await exchange(port, raw(offset=7, length=33))

    assert decode_lane_reply(reply) == ChunkHeader(33)
    assert rest == DATA[7:40]


# -- a misbehaving server -------------------------------------------------------------------------


def answering(header: bytes, body: bytes = b"", close: bool = True) -> Handler:
    """A server that reads one line, then sends `header` and `body` whatever was asked."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(header + body)
        await writer.drain()
        if close:
            writer.close()

    return handle


@pytest.mark.parametrize("offered", [9, 11, 0])
async def test_header_offering_another_length_is_bad_chunk(
    fake_server: Callable[[Handler], Awaitable[int]], offered: int
) -> None:
    port = await fake_server(answering(encode(ChunkHeader(offered)) + b"\n", b"x" * offered))

    err = await refused(port, request(length=10))

    assert err.code == "bad-chunk"


async def test_client_never_yields_more_than_asked(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(encode(ChunkHeader(10)) + b"\n", b"0123456789EXTRA"))

    pieces = await fetch(port, request(length=10))

    assert b"".join(pieces) == b"0123456789"


async def test_server_closing_mid_chunk_is_peer_unreachable(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(encode(ChunkHeader(10)) + b"\n", b"01234"))

    err = await refused(port, request(length=10))

    assert err.code == "peer-unreachable"


async def test_server_closing_before_a_header_is_peer_unreachable(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(b""))

    err = await refused(port, request())

    assert err.code == "peer-unreachable"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (encode(ErrorReply("not-servable", "busy")) + b"\n", "not-servable"),
        (encode(ErrorReply("made-up-code", "??")) + b"\n", "remote-error"),
        (b"garbage\n", "bad-message"),
    ],
    ids=["known-code", "unknown-code", "garbage"],
)
async def test_refusal_or_garbage_header_reaches_the_client(
    fake_server: Callable[[Handler], Awaitable[int]], header: bytes, code: str
) -> None:
    port = await fake_server(answering(header))

    err = await refused(port, request())

    assert err.code == code


async def test_silent_server_times_out_as_peer_unreachable(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    port = await fake_server(silent)
    try:
        with pytest.raises(PeerError) as err:
            await fetch(port, request(), idle_timeout=0.05)
    finally:
        done.set()
    assert err.value.code == "peer-unreachable"


async def test_nobody_listening_is_peer_unreachable() -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])  # bound, never listening: connecting is refused

        err = await refused(port, request())

    assert err.code == "peer-unreachable"
    assert err.message.startswith(f"data channel {HOST}:{port}: ConnectionRefusedError"), err


# -- the upload rate limiter ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unlimited_never_waits() -> None:
    limiter = RateLimiter(None, Clock())
    assert limiter.debit(10**12) == 0.0
    assert limiter.debit(10**12) == 0.0


@pytest.mark.parametrize("rate", [1, 16 * 1024, 128 * 1024, 8 * MIB, 10**12])
def test_a_capped_link_is_never_silent_for_long(rate: int) -> None:
    """Under a cap a piece is at most an eighth of a second's worth (or 16 KiB): a receiver's
    chunk idle timeout (5 s) never mistakes a slow, capped source for a silent one."""
    piece = RateLimiter(rate).piece(4 * MIB)
    assert 0 < piece <= 4 * MIB
    assert piece / rate <= 0.125 or piece == 16 * 1024
    assert RateLimiter(None).piece(4 * MIB) == 4 * MIB


def test_first_seconds_burst_is_capped_at_rate() -> None:
    limiter = RateLimiter(1000, Clock())

    assert limiter.debit(1000) == 0.0
    assert limiter.debit(1) == pytest.approx(0.001)


def test_one_big_debit_waits_for_what_exceeds_a_second_of_credit() -> None:
    assert RateLimiter(1000, Clock()).debit(3500) == pytest.approx(2.5)


def test_long_idle_banks_no_more_than_one_second() -> None:
    clock = Clock()
    limiter = RateLimiter(1000, clock)
    assert limiter.debit(1000) == 0.0

    clock.now += 3600.0

    assert limiter.debit(1000) == 0.0
    assert limiter.debit(500) == pytest.approx(0.5)


def test_two_debits_draw_from_one_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(1000, clock)

    assert limiter.debit(600) == 0.0
    assert limiter.debit(600) == pytest.approx(0.2)  # the sum, 1200, is 200 over a second's worth


def test_credit_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(1000, clock)
    assert limiter.debit(1000) == 0.0

    clock.now += 0.25

    assert limiter.debit(250) == 0.0
    assert limiter.debit(250) == pytest.approx(0.25)


def test_debt_is_paid_before_new_credit() -> None:
    clock = Clock()
    limiter = RateLimiter(1000, clock)
    assert limiter.debit(2000) == pytest.approx(1.0)

    clock.now += 1.0  # the wait it was told to do

    assert limiter.debit(1000) == pytest.approx(1.0)


# -- what a failure says, and the server's own edges ---------------------------------------------


async def test_a_cut_chunk_says_where_and_how_far_it_got(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(encode(ChunkHeader(10)) + b"\n", b"01234"))

    err = await refused(port, request(length=10))

    assert err.message == f"data channel {HOST}:{port} closed at 5/10"


async def test_no_header_says_which_channel_closed(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(b""))

    err = await refused(port, request())

    assert err.message == f"data channel {HOST}:{port} closed before a header"


async def test_a_wrong_length_header_says_what_was_offered(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(encode(ChunkHeader(9)) + b"\n", b"x" * 9))

    err = await refused(port, request(length=10))

    assert err.message == "asked for 10 bytes, got ChunkHeader(length=9)"


async def test_a_body_that_stalls_times_out_as_peer_unreachable(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    done = asyncio.Event()

    async def stalling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(encode(ChunkHeader(10)) + b"\n" + b"0123")
        await writer.drain()
        await done.wait()
        writer.close()

    port = await fake_server(stalling)
    try:
        with pytest.raises(PeerError) as err:
            await fetch(port, request(), idle_timeout=0.05)
    finally:
        done.set()
    assert err.value.code == "peer-unreachable"


class Items(list[object]):
    """A stream sink that keeps each entry header and a copy of every slice, in order."""

    def entry(self, header: EntryHeader) -> None:
        self.append(header)

    def write(self, data: memoryview | bytes) -> None:
        self.append(bytes(data))

    def end(self) -> None:
        self.append(StreamEnd())


async def entries_from(port: int) -> tuple[list[object], PeerError]:
    got = Items()
    with pytest.raises(PeerError) as err:
        async with asyncio.timeout(LIMIT):
            await TcpLane(idle_timeout=LIMIT).stream(HOST, port, StreamRequest(TOKEN, GAME), got)
    return got, err.value


async def test_a_whole_stream_reaches_the_sink_in_order_then_its_end(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """Headers, bodies read past a header line and bodies read alone, an empty entry, and the
    end: the sink sees exactly the frames, and `end` only once the source said so."""
    frames = b"".join(
        [
            encode(EntryHeader("a", 3)) + b"\nabc",
            encode(EntryHeader("empty", 0)) + b"\n",
            encode(EntryHeader("big", len(DATA))) + b"\n" + DATA,
            encode(StreamEnd()) + b"\n",
        ]
    )
    port = await fake_server(answering(frames))
    got = Items()

    async with asyncio.timeout(LIMIT):
        await TcpLane(idle_timeout=LIMIT).stream(HOST, port, StreamRequest(TOKEN, GAME), got)

    headers = [item for item in got if not isinstance(item, bytes)]
    assert headers == [
        EntryHeader("a", 3),
        EntryHeader("empty", 0),
        EntryHeader("big", len(DATA)),
        StreamEnd(),
    ]
    big = got.index(EntryHeader("big", len(DATA)))
    assert got[:big] == [EntryHeader("a", 3), b"abc", EntryHeader("empty", 0)]
    assert b"".join(item for item in got[big + 1 : -1] if isinstance(item, bytes)) == DATA


async def test_a_stream_cut_inside_an_entry_says_how_far_it_got(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    frames = encode(EntryHeader("a", 3)) + b"\nabc" + encode(EntryHeader("b", 5)) + b"\n12"
    port = await fake_server(answering(frames))

    got, err = await entries_from(port)

    assert got == [EntryHeader("a", 3), b"abc", EntryHeader("b", 5), b"12"]
    assert (err.code, err.message) == (
        "peer-unreachable",
        f"data channel {HOST}:{port} closed at 2/5",
    )


async def test_a_stream_with_a_chunk_header_is_bad_message(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await fake_server(answering(encode(ChunkHeader(3)) + b"\nabc"))

    got, err = await entries_from(port)

    assert got == []
    assert (err.code, err.message) == (
        "bad-message",
        "expected an entry, got ChunkHeader(length=3)",
    )


async def test_a_gate_that_crashes_still_answers_and_is_logged(games: Path) -> None:
    def crashing(request: ChunkRequest) -> tuple[Path, int, int]:
        raise RuntimeError("the gate fell over")

    server = await serve_lane(HOST, 0, crashing, crashing, RateLimiter(None))  # type: ignore[arg-type]
    try:
        with structlog.testing.capture_logs() as logs:
            reply, rest = await exchange(server.port, raw())
    finally:
        await server.close()
    assert decode_lane_reply(reply) == ErrorReply("internal", "RuntimeError")
    assert rest == b""
    assert server.handlers == set(), "a finished request is not kept"
    assert [(e["event"], e["log_level"]) for e in logs] == [("lane request crashed", "error")]


async def test_an_over_long_request_line_is_named_as_such(port: int) -> None:
    reply, rest = await exchange(port, raw(token="x" * 5000))

    assert decode_lane_reply(reply) == ErrorReply("bad-message", "request line too long")
    assert rest == b""


async def test_a_range_across_send_slices_ends_exactly_at_its_length(port: int) -> None:
    length = upload.SEND_SLICE + 100
    reply, rest = await exchange(port, raw(offset=5, length=length))

    assert decode_lane_reply(reply) == ChunkHeader(length)
    assert rest == DATA[5 : 5 + length]


async def test_a_file_that_shrank_after_its_grant_ends_the_reply_short(tmp_path: Path) -> None:
    path = tmp_path / "shrunk.bin"
    path.write_bytes(b"0123456789")

    def grant_more(request: ChunkRequest) -> tuple[Path, int, int]:
        return path, 0, 100  # granted when the file was larger

    server = await serve_lane(HOST, 0, grant_more, grant_more, RateLimiter(None))  # type: ignore[arg-type]
    try:
        reply, rest = await exchange(server.port, raw())
    finally:
        await server.close()
    assert decode_lane_reply(reply) == ChunkHeader(100)
    assert rest == b"0123456789"


async def test_a_client_that_never_asks_is_dropped() -> None:
    tally = Tally(Budgets(request_deadline=0.05))
    server = await serve_lane(HOST, 0, refuse, refuse, RateLimiter(None), tally)
    async with asyncio.timeout(LIMIT):
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            assert await reader.read() == b"", "closed without a word"
        finally:
            writer.close()
            await server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def test_the_lane_listens_on_its_port_and_gets_it_back_after_a_restart(
    games: Path,
) -> None:
    """The server closes each connection first, leaving TIME_WAIT on its port: a restarted
    peer must still be able to listen there at once."""

    def authorize(request: ChunkRequest) -> tuple[Path, int, int]:
        return authorize_chunk(games, {GAME: VERSION}, frozenset(), TOKEN, request)

    wanted = free_port()
    for _ in range(2):
        server = await serve_lane(HOST, wanted, authorize, authorize, RateLimiter(None))  # type: ignore[arg-type]
        try:
            assert server.port == wanted
            _reply, rest = await exchange(wanted, raw(length=10))  # read until the server closes
            assert rest == DATA[:10]
        finally:
            await server.close()


async def test_a_closed_lane_stops_listening_and_drops_its_connections(games: Path) -> None:
    def authorize(request: ChunkRequest) -> tuple[Path, int, int]:
        return authorize_chunk(games, {GAME: VERSION}, frozenset(), TOKEN, request)

    server = await serve_lane(HOST, 0, authorize, authorize, RateLimiter(None))  # type: ignore[arg-type]
    port = server.port
    async with asyncio.timeout(LIMIT):
        reader, writer = await asyncio.open_connection(HOST, port)  # never sends its request
        while not server.handlers:  # until the server has taken the connection
            await asyncio.sleep(0)
        await server.close()
        try:  # a handler ended by a close is cut (reset), like a stalled one
            with contextlib.suppress(ConnectionResetError):
                assert await reader.read() == b""
        finally:
            writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(HOST, port)


async def test_closing_a_lane_that_never_started_is_harmless() -> None:
    await upload.LaneServer().close()


async def test_closing_the_lane_waits_for_its_streams_to_clean_up() -> None:
    """A stream's provider is killed in its sender's cleanup: close() returns after that."""
    started, cleaned = asyncio.Event(), asyncio.Event()

    def open_stream(request: StreamRequest) -> SendStream:
        async def send(writer: asyncio.StreamWriter, *_: object) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.01)  # killing and reaping the provider takes a moment
                cleaned.set()

        return send

    def no_chunks(request: ChunkRequest) -> tuple[Path, int, int]:
        raise PeerError("not-servable", "no chunks in this test")

    server = await serve_lane(HOST, 0, no_chunks, open_stream, RateLimiter(None))
    async with asyncio.timeout(LIMIT):
        _reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            writer.write(encode(StreamRequest(TOKEN, GAME)) + b"\n")
            await started.wait()
            await server.close()
            assert cleaned.is_set(), "close() returned before the stream had cleaned up"
        finally:
            writer.close()


async def test_a_cancel_cuts_a_stalled_chunk_at_once_and_waits_for_its_thread(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """The receiving thread is blocked in recv with a long idle timeout: the cancel must cut
    the socket, and only return once the thread has stopped handing slices to the sink."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    first_slice = asyncio.Event()

    async def stalling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(encode(ChunkHeader(10)) + b"\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the body comes apart from the header
        writer.write(b"0123")
        await writer.drain()
        await done.wait()
        writer.close()

    class Watched(Pieces):
        def write(self, data: memoryview | bytes) -> None:
            super().write(data)
            loop.call_soon_threadsafe(first_slice.set)

    port = await fake_server(stalling)
    pieces = Watched()
    task = asyncio.create_task(TcpLane(idle_timeout=60).fetch(HOST, port, request(), pieces))
    try:
        async with asyncio.timeout(LIMIT):
            await first_slice.wait()
        task.cancel()
        finished, _ = await asyncio.wait({task}, timeout=LIMIT)  # the server is still silent
        assert finished, "the cancel did not cut the blocked receive"
        assert task.cancelled()
    finally:
        done.set()
        await asyncio.wait({task})
    assert b"".join(pieces) == b"0123"


async def test_a_body_after_the_header_is_read_no_further_than_the_chunk(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """The rest of the body comes once the client holds the first slice; what follows the
    chunk on the wire is never read into it."""
    loop = asyncio.get_running_loop()
    first_slice = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(encode(ChunkHeader(10)) + b"\n0123")
        await writer.drain()
        await first_slice.wait()
        writer.write(b"456789EXTRA")
        await writer.drain()
        writer.close()

    class Watched(Pieces):
        def write(self, data: memoryview | bytes) -> None:
            super().write(data)
            loop.call_soon_threadsafe(first_slice.set)

    port = await fake_server(handle)
    pieces = Watched()
    async with asyncio.timeout(LIMIT):
        await TcpLane(idle_timeout=LIMIT).fetch(HOST, port, request(length=10), pieces)

    assert b"".join(pieces) == b"0123456789"


class Scripted:
    """A socket whose `recv` hands out the given pieces in turn, then end of stream."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)

    def recv(self, size: int) -> bytes:
        assert size == MAX_LANE_LINE
        return self.pieces.pop(0) if self.pieces else b""


def read_line(*pieces: bytes) -> tuple[bytes, bytes]:
    """The header line read from `pieces`, and what came in behind it."""
    frames = lane_module._Frames(Scripted(*pieces), "here")  # type: ignore[arg-type]
    return frames.line(), frames.rest


def test_a_header_line_may_arrive_in_pieces_with_the_body_behind_it() -> None:
    assert read_line(b'{"type":', b'"chunk"', b',"length":3}\nab') == (
        b'{"type":"chunk","length":3}',
        b"ab",
    )


def test_a_header_line_of_the_longest_length_is_read_and_a_longer_one_refused() -> None:
    longest = b"x" * MAX_LANE_LINE
    assert read_line(longest, b"\nbody") == (longest, b"body")
    with pytest.raises(PeerError) as err:
        read_line(longest + b"x", b"\n")
    assert (err.value.code, err.value.message) == (
        "bad-message",
        f"here sent a header line over {MAX_LANE_LINE} bytes",
    )


def test_an_end_of_stream_inside_the_header_line_is_peer_unreachable() -> None:
    with pytest.raises(PeerError) as err:
        read_line(b'{"type":')
    assert (err.value.code, err.value.message) == (
        "peer-unreachable",
        "here closed before a header",
    )


@pytest.mark.parametrize("rate", [None, 8 * MIB], ids=["uncapped", "capped"])
async def test_a_range_goes_out_whole_uncapped_and_in_slices_under_a_cap(
    games: Path, monkeypatch: pytest.MonkeyPatch, rate: int | None
) -> None:
    """Uncapped, one slice sends the range; under a cap every slice is an eighth of a second's
    worth at most (1 MiB at 8 MiB/s), and the slices cover exactly the range."""
    calls: list[tuple[int, int]] = []
    real_sendfile = senders.Blocking.sendfile

    def spy(blocking: Any, sock: int, file: int, offset: int, count: int) -> int:
        calls.append((offset, count))
        return real_sendfile(blocking, sock, file, offset, count)

    monkeypatch.setattr(senders.Blocking, "sendfile", spy)

    def authorize(request: ChunkRequest) -> tuple[Path, int, int]:
        return authorize_chunk(games, {GAME: VERSION}, frozenset(), TOKEN, request)

    def refuse_streams(request: StreamRequest) -> Any:
        raise PeerError("not-servable", "no streams in this test")

    server = await serve_lane(HOST, 0, authorize, refuse_streams, RateLimiter(rate))
    offset, length = 5, 2 * MIB + MIB // 2
    try:
        pieces = await fetch(server.port, request(offset=offset, length=length))
    finally:
        await server.close()

    assert b"".join(pieces) == DATA[offset : offset + length]
    if rate is None:
        assert calls == [(offset, length)]
    else:
        assert calls == [(offset, MIB), (offset + MIB, MIB), (offset + 2 * MIB, MIB // 2)]


async def test_chunks_in_flight_hold_lane_threads_not_the_default_executor(
    fake_server: Callable[[Handler], Awaitable[int]],
) -> None:
    """More chunks blocked at once than the default executor has threads (at most 32): every
    one still reaches the server, and work sent to the default executor (fsync, the progress
    record) still runs meanwhile."""
    many = 40
    arrived = 0
    all_in, release = asyncio.Event(), asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal arrived
        await reader.readline()
        arrived += 1
        if arrived == many:
            all_in.set()
        await release.wait()
        writer.write(encode(ChunkHeader(1)) + b"\nx")
        await writer.drain()
        writer.close()

    port = await fake_server(held)
    lane = TcpLane(idle_timeout=LIMIT)
    fetches = [
        asyncio.create_task(lane.fetch(HOST, port, request(length=1), Pieces()))
        for _ in range(many)
    ]
    try:
        async with asyncio.timeout(LIMIT):
            await all_in.wait()
            assert await in_thread(lambda: "ran") == "ran"
    finally:
        release.set()
        async with asyncio.timeout(LIMIT):
            await asyncio.gather(*fetches)
