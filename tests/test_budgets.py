"""Issue 17, class 2: every serving handler has a progress deadline and a budget.

Each bound of `peer.budgets.Budgets` is exercised here on a real lane server (small budgets,
short deadlines) with askers that stall: a stalled reader is cut, its child process group
killed and its descriptors closed; a reservation over a budget is refused with `busy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from peer.budgets import Budgets, Tally
from peer.errors import PeerError
from peer.protocol import (
    ChunkRequest,
    ErrorReply,
    GetStream,
    StreamEnd,
    StreamRequest,
    decode_lane_reply,
    encode,
)
from peer.transfer.provider import ListingCache
from peer.transfer.serve import Serving, authorize_chunk
from peer.transfer.upload import LaneServer, Progress, RateLimiter, SendStream, serve_lane

UNRAR = shutil.which("unrar") or "unrar"
HOST = "127.0.0.1"
GAME, VERSION, TOKEN = "cnctw", "20240101", "tok"
LIMIT = 10.0
BIG = 32 * 1024 * 1024  # more than loopback's socket buffers hold


@pytest.fixture
def games(tmp_path: Path) -> Path:
    root = tmp_path / "games" / GAME
    root.mkdir(parents=True)
    (root / "version.ini").write_text(VERSION)
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG)
    return tmp_path / "games"


def chunk(length: int = BIG) -> bytes:
    return encode(ChunkRequest(TOKEN, GAME, "big.bin", 0, length)) + b"\n"


def stream_request() -> bytes:
    return encode(StreamRequest(TOKEN, GAME)) + b"\n"


Opener = Callable[[StreamRequest], SendStream]


def refuse_streams(request: StreamRequest) -> SendStream:
    raise PeerError("not-servable", "no streams here")


@pytest.fixture
async def serve(games: Path) -> AsyncIterator[Callable[..., Any]]:
    servers: list[LaneServer] = []

    async def start(
        budgets: Budgets, open_stream: Opener = refuse_streams, tally: Tally | None = None
    ) -> LaneServer:
        def authorize(request: ChunkRequest) -> tuple[Path, int, int]:
            return authorize_chunk(games, {GAME: VERSION}, frozenset(), TOKEN, request)

        tally = tally or Tally(budgets)
        server = await serve_lane(HOST, 0, authorize, open_stream, RateLimiter(None), tally)
        server.tally = tally  # type: ignore[attr-defined]
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def connect(
    port: int, line: bytes | None, source: str = HOST
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    if line is not None:
        writer.write(line)
        await writer.drain()
    return reader, writer


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait for `check` to hold (the handlers' own deadlines drive it), failing after LIMIT."""
    try:
        async with asyncio.timeout(LIMIT):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def busy_reply(reader: asyncio.StreamReader) -> str:
    async with asyncio.timeout(LIMIT):
        reply = decode_lane_reply(await reader.readline())
    assert isinstance(reply, ErrorReply), reply
    return f"{reply.code}: {reply.message}"


def open_files(path: Path) -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if _target(fd) == str(path))


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


# -- progress deadlines ----------------------------------------------------------------------------


async def test_a_chunk_whose_bytes_are_never_read_is_cut(serve: Any, games: Path) -> None:
    server = await serve(Budgets(progress_deadline=0.3, send_slice=1024 * 1024))
    askers = [await connect(server.port, chunk()) for _ in range(5)]
    big = games / GAME / "big.bin"
    await until(lambda: open_files(big) == 5, "every chunk file open")
    await until(lambda: not server.handlers, "the stalled handlers ended")
    assert open_files(big) == 0, "a stalled chunk kept its file open"
    assert server.tally.total["descriptor"] == 0 and server.tally.total["connection"] == 0
    for reader, writer in askers:
        with pytest.raises((ConnectionError, AssertionError)):  # cut: never the whole chunk
            async with asyncio.timeout(LIMIT):
                got = len(await reader.read(BIG * 2))
                while more := await reader.read(BIG):
                    got += len(more)
            assert got >= BIG, f"cut after {got} bytes"
        writer.close()


async def test_a_chunk_ends_quietly_when_its_asker_cuts_it_mid_send(
    serve: Any, games: Path
) -> None:
    """A receiver that resets its socket mid-chunk (a copy that lost the end game, or a crash):
    the sending thread stops at its next write, the file and the socket's duplicate are
    closed, nothing escapes the handler (X06 once found a 'Transport is closing' error here),
    and the lane serves the next asker."""
    loop = asyncio.get_running_loop()
    escaped: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    server = await serve(Budgets(progress_deadline=LIMIT * 4))
    reader, writer = await connect(server.port, chunk())
    async with asyncio.timeout(LIMIT):
        await reader.readline()
        await reader.readexactly(1024 * 1024)
    big = games / GAME / "big.bin"
    assert open_files(big) == 1, "the chunk was sent in one go: nothing left to cut"
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    await until(lambda: not server.handlers, "the cut chunk's handler ended")
    assert open_files(big) == 0, "the cut chunk kept its file open"
    assert server.tally.total["connection"] == 0
    reader, writer = await connect(server.port, chunk(10))
    async with asyncio.timeout(LIMIT):
        assert b"length" in await reader.readline()
        assert await reader.readexactly(10) == bytes(10)
    writer.close()
    assert not escaped


async def test_closing_the_lane_stops_a_chunk_stalled_mid_send_at_once(
    serve: Any, games: Path
) -> None:
    """A lane closed while an asker has stopped reading: the sending thread is stopped by the
    close, not by the progress deadline (an hour here), and the file is closed."""
    server = await serve(Budgets(progress_deadline=3600.0))
    reader, writer = await connect(server.port, chunk())
    async with asyncio.timeout(LIMIT):
        await reader.readline()
    big = games / GAME / "big.bin"
    await until(lambda: open_files(big) == 1, "the chunk's file open")
    async with asyncio.timeout(LIMIT):
        await server.close()
    assert open_files(big) == 0 and not server.handlers
    writer.close()


async def test_a_request_that_never_comes_is_dropped(serve: Any) -> None:
    server = await serve(Budgets(request_deadline=0.2))
    reader, writer = await connect(server.port, None)
    async with asyncio.timeout(LIMIT):
        assert await reader.read() == b""
    writer.close()


def server_sockets(port: int) -> list[str]:
    """Our lane's accepted sockets still open, from /proc/net/tcp (TIME_WAIT and CLOSE aside):
    a stalled asker's socket must be aborted, not closed with unsent bytes still buffered."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if (
            int(local.split(":")[1], 16) == port
            and int(remote.split(":")[1], 16)
            and state
            not in {
                "06",
                "07",
                "0A",
            }
        ):
            found.append(f"{remote} state {state}")
    return found


def open_here() -> set[str]:
    """What this process (the serving peer, in-process) holds open."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def unrar_processes(archive: Path) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if str(archive) in targets:
            found.append(int(pid))
    return found


def serving(games: Path, unrar: str, tally: Tally) -> Serving:
    """The node's own serving part over `games`, with the server's budgets."""
    return Serving(lambda: games, {GAME: VERSION}, frozenset, TOKEN, unrar, None, tally)


def make_archive(games: Path, stored: bool = False) -> Path:
    """An archive of random bytes larger than the socket buffers; unless `stored`, with a
    compressed member too, so that its streams run unrar (a stored one is sent as it lies)."""
    stage = games.parent / "stage"
    stage.mkdir()
    (stage / "payload.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    (stage / "notes.txt").write_bytes(b"compresses\n" * 10_000)
    archive = games / GAME / "cnctw.eti"
    method = "-m0" if stored else "-m3"
    os.system(f"cd {stage} && rar a -idq -cfg- -ma5 {method} {archive} payload.bin notes.txt")
    return archive


async def test_a_stream_whose_bytes_are_never_read_is_cut_and_its_unrar_killed(
    serve: Any, games: Path
) -> None:
    archive = make_archive(games)
    tally = Tally(Budgets(progress_deadline=0.5))
    server = await serve(tally.budgets, serving(games, UNRAR, tally).open_stream, tally)
    askers = [await connect(server.port, stream_request()) for _ in range(2)]
    await until(lambda: len(unrar_processes(archive)) >= 2, "both streams' unrar running")
    await until(lambda: not server.handlers, "the stalled streams ended")
    assert unrar_processes(archive) == [], "a stalled stream left its unrar running"
    assert server_sockets(server.port) == [], "a stalled asker's socket was left open"
    assert server.tally.total["child"] == 0 and server.tally.total["stream"] == 0
    for _, writer in askers:
        writer.close()


async def test_a_stored_stream_whose_bytes_are_never_read_is_cut(serve: Any, games: Path) -> None:
    archive = make_archive(games, stored=True)
    tally = Tally(Budgets(progress_deadline=0.5))
    server = await serve(tally.budgets, serving(games, UNRAR, tally).open_stream, tally)
    askers = [await connect(server.port, stream_request()) for _ in range(2)]
    await until(lambda: server.tally.total["stream"] == 2, "both streams running")
    await until(lambda: not server.handlers, "the stalled streams ended")
    assert unrar_processes(archive) == [], "a stored archive streams with no unrar"
    assert str(archive) not in open_here(), "a cut stream left the archive open"
    assert server_sockets(server.port) == [], "a stalled asker's socket was left open"
    assert server.tally.total["stream"] == 0 and server.tally.total["descriptor"] == 0
    for _, writer in askers:
        writer.close()


async def test_an_unrar_that_never_writes_is_killed_at_the_deadline(
    serve: Any, games: Path, tmp_path: Path
) -> None:
    archive = make_archive(games)
    stuck = tmp_path / "stuck-unrar"
    pidfile = tmp_path / "sleeper.pid"
    stuck.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pidfile}\nwait\n")
    stuck.chmod(0o755)
    tally = Tally(Budgets(progress_deadline=0.3))
    serves = serving(games, UNRAR, tally)
    await serves.answer(GetStream(GAME))  # listed (and cached) honestly; streams get stuck
    serves._listings.unrar = str(stuck)
    server = await serve(tally.budgets, serves.open_stream, tally)
    reader, writer = await connect(server.port, stream_request())
    await until(pidfile.exists, "the stuck unrar started")
    await until(lambda: not server.handlers, "the stream was cut")
    sleeper = int(pidfile.read_text())
    await until(lambda: not _alive(sleeper), "the stuck unrar's child was killed")
    assert server.tally.total["child"] == 0
    del archive, reader
    writer.close()


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("exec sleep 600", id="never-writes"),
        # Every byte listed, the output closed, and then no exit: the wait for its status is
        # bounded too (a listing holds the cache's lock, so a hang would stall every later one).
        pytest.param(f'"{UNRAR}" "$@"\nexec >&-\nexec sleep 600', id="never-exits"),
    ],
)
async def test_a_listing_whose_unrar_stalls_is_refused(
    tmp_path: Path, games: Path, script: str
) -> None:
    make_archive(games)
    stuck = tmp_path / "stuck-unrar"
    stuck.write_text(f"#!/bin/sh\n{script}\n")
    stuck.chmod(0o755)
    cache = ListingCache(str(stuck), Tally(Budgets(progress_deadline=0.3)))
    async with asyncio.timeout(LIMIT):
        with pytest.raises(PeerError) as caught:
            await cache.listings(games / GAME)
    assert caught.value.code == "not-servable" and "no progress" in caught.value.message


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return status != "Z"


# -- budgets ---------------------------------------------------------------------------------------


async def test_connections_per_host_are_bounded_and_other_hosts_unaffected(serve: Any) -> None:
    server = await serve(Budgets(connections_per_host=2))
    held = [await connect(server.port, None) for _ in range(2)]
    reader, writer = await connect(server.port, None)
    assert (await busy_reply(reader)).startswith("busy: connection budget (2 per host)")
    other, other_writer = await connect(server.port, chunk(10), source="127.0.0.2")
    async with asyncio.timeout(LIMIT):
        header = decode_lane_reply(await other.readline())
    assert not isinstance(header, ErrorReply), "another host has its own budget"
    for _, w in [*held, (reader, writer), (other, other_writer)]:
        w.close()


async def test_connections_in_total_are_bounded(serve: Any) -> None:
    server = await serve(Budgets(connections_total=2))
    held = [await connect(server.port, None, source=f"127.0.0.{i}") for i in (2, 3)]
    reader, writer = await connect(server.port, None, source="127.0.0.4")
    assert (await busy_reply(reader)).startswith("busy: connection budget (2 in all)")
    for _, w in [*held, (reader, writer)]:
        w.close()


def waiting_streams() -> tuple[Opener, asyncio.Event]:
    release = asyncio.Event()

    def open_stream(request: StreamRequest) -> SendStream:
        async def send(writer: Any, progress: Progress, tally: Tally, asker: str) -> None:
            progress.moved()
            with progress.paused():
                await release.wait()

        return send

    return open_stream, release


async def test_streams_per_host_are_bounded(serve: Any) -> None:
    opener, release = waiting_streams()
    server = await serve(Budgets(streams_per_host=1), opener)
    held = await connect(server.port, stream_request())
    await until(lambda: server.tally.total["stream"] == 1, "the first stream runs")
    reader, writer = await connect(server.port, stream_request())
    assert (await busy_reply(reader)).startswith("busy: stream budget (1 per host)")
    release.set()
    held[1].close()
    writer.close()


async def test_streams_in_total_are_bounded(serve: Any) -> None:
    opener, release = waiting_streams()
    server = await serve(Budgets(streams_total=1), opener)
    held = await connect(server.port, stream_request(), source="127.0.0.2")
    await until(lambda: server.tally.total["stream"] == 1, "the first stream runs")
    reader, writer = await connect(server.port, stream_request(), source="127.0.0.3")
    assert (await busy_reply(reader)).startswith("busy: stream budget (1 in all)")
    release.set()
    held[1].close()
    writer.close()


async def test_child_processes_are_bounded(games: Path) -> None:
    make_archive(games)
    tally = Tally(Budgets(children_total=1))
    with tally.reserve("", "child"), pytest.raises(PeerError) as caught:  # a stream's unrar runs
        await ListingCache(UNRAR, tally).listings(games / GAME)
    assert (caught.value.code, caught.value.message) == ("busy", "child budget (1 in all) in use")
    assert len(await ListingCache(UNRAR, tally).listings(games / GAME)) == 1


async def test_descriptors_are_bounded(serve: Any) -> None:
    """Two idle connections hold two descriptors; a chunk would open a third (its file)."""
    server = await serve(Budgets(descriptors_total=2, progress_deadline=5.0))
    held = await connect(server.port, None, source="127.0.0.2")
    await until(lambda: server.tally.total["descriptor"] == 1, "the first connection counted")
    reader, writer = await connect(server.port, chunk(10), source="127.0.0.3")
    assert (await busy_reply(reader)).startswith("busy: descriptor budget (2) in use")
    held[1].close()
    writer.close()


PACED = 512 * 1024


async def test_a_slow_first_listing_does_not_count_against_the_streams_deadline(
    serve: Any, games: Path, tmp_path: Path
) -> None:
    """A stream's first listing extracts the archive under a deadline of its own: while its
    bytes keep moving, the stream's handler is not cut for waiting on it."""
    stage = games.parent / "stage"
    stage.mkdir()
    (stage / "payload.bin").write_bytes(os.urandom(PACED))
    os.system(f"cd {stage} && rar a -idq -cfg- -ma5 -m0 {games / GAME / 'cnctw.eti'} payload.bin")
    paced = tmp_path / "paced-unrar"  # 64 KiB every 0.25 s: about 2 s for the listing pass
    pace = (
        "import sys, time\n"
        "while d := sys.stdin.buffer.read(65536):\n"
        "    sys.stdout.buffer.write(d); sys.stdout.buffer.flush(); time.sleep(0.25)\n"
    )
    (tmp_path / "pace.py").write_text(pace)
    paced.write_text(f'#!/bin/sh\n"{UNRAR}" "$@" | python3 {tmp_path / "pace.py"}\n')
    paced.chmod(0o755)
    tally = Tally(Budgets(progress_deadline=1.5))
    server = await serve(tally.budgets, serving(games, str(paced), tally).open_stream, tally)
    reader, writer = await connect(server.port, stream_request())
    async with asyncio.timeout(3 * LIMIT):
        header = decode_lane_reply(await reader.readline())
        assert not isinstance(header, ErrorReply), header
        await reader.readexactly(PACED)
        assert decode_lane_reply(await reader.readline()) == StreamEnd()
    writer.close()


async def test_a_child_that_escapes_the_group_is_given_up_after_the_grace(
    serve: Any, games: Path, tmp_path: Path
) -> None:
    """A grandchild that left the process group keeps the pipe open after the kill: the
    handler waits `kill_grace` for the pipe to end, then drops it, and ends."""
    make_archive(games)
    escaping = tmp_path / "escaping-unrar"
    pidfile = tmp_path / "escaped.pid"
    escaping.write_text(f"#!/bin/sh\nsetsid sleep 600 &\necho $! > {pidfile}\nwait\n")
    escaping.chmod(0o755)
    tally = Tally(Budgets(progress_deadline=0.3, kill_grace=0.3))
    serves = serving(games, UNRAR, tally)
    await serves.answer(GetStream(GAME))
    serves._listings.unrar = str(escaping)
    server = await serve(tally.budgets, serves.open_stream, tally)
    _reader, writer = await connect(server.port, stream_request())
    try:
        await until(pidfile.exists, "the escaping unrar started")
        await until(lambda: not server.handlers, "the stream ended despite the escaped child")
        assert tally.total["child"] == 0
    finally:
        writer.close()
        await until(lambda: pidfile.read_text().strip().isdigit(), "the pid written")
        os.kill(int(pidfile.read_text()), 9)
