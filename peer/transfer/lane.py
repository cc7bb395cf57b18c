"""The fast lane's asking end: chunk bytes and streamed entries over plain TCP.

A request is one JSON line (`protocol.ChunkRequest`, carrying the serving peer's data token,
which it hands out only inside its QUIC Hello); the reply is one JSON line (`ChunkHeader` or
`ErrorReply`) and, when granted, exactly the asked bytes, sent with `sendfile`. Every chunk is
checked on arrival against the digest (BLAKE3) of the validated descriptor, so the lane needs no
encryption of its own to be safe against corruption or a lying peer.

The serving end is `upload.py`. This end hands each chunk's bytes to a `ChunkSink` the fetcher
gives it (which writes and hashes them), so a test can put an in-memory lane in its place.
`TcpLane` receives a chunk in a thread of its own with blocking `recv_into` a reused buffer,
and the sink runs in that thread too: `recv_into`, `os.pwrite` and `blake3` release the GIL,
so two chunks in flight use two cores, and no byte is copied through asyncio's stream buffers
or hashed on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog

from peer.errors import PeerError
from peer.protocol import (
    MAX_LANE_LINE,
    ChunkHeader,
    ChunkRequest,
    EntryHeader,
    ErrorReply,
    LaneReply,
    LaneRequest,
    StreamEnd,
    StreamRequest,
    decode_lane_reply,
    encode,
)

log = structlog.get_logger("lane")

RECV_SLICE = 1024 * 1024
# A stream's reader buffers up to twice its limit before it stops reading the socket: at the
# header line's bound (4 KiB) every slice of an entry was a few KiB, each a trip through the
# loop (issue 20: 2 GiB streamed at a tenth of `unrar p`). A header line is still refused past
# MAX_LANE_LINE, by `decode_lane_reply`.
STREAM_BUFFER = RECV_SLICE


class ChunkSink(Protocol):
    def write(self, data: memoryview | bytes) -> None:
        """Take the next slice of a chunk (blocking; `TcpLane` calls it from its own thread,
        and the slice's buffer is reused once this returns)."""


class Lane(Protocol):
    async def fetch(self, host: str, port: int, request: ChunkRequest, sink: ChunkSink) -> None:
        """Hand the bytes of one granted chunk to `sink`, in order, never more than asked."""
        ...

    def entries(
        self, host: str, port: int, request: StreamRequest
    ) -> AsyncGenerator[EntryHeader | bytes, None]:
        """Yield each entry's header, then its bytes slice by slice, until the stream's end."""
        ...


class _Connection:
    """A chunk's socket, shared with the task awaiting it so that a cancel can cut it."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.aborted = False
        self.lock = threading.Lock()

    def adopt(self, sock: socket.socket) -> None:
        with self.lock:
            self.sock = sock
        if self.aborted:
            self.abort()

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)


class TcpLane:
    """The real lane: one TCP connection per chunk, or per stream."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        # Own threads: a chunk holds one for its whole transfer, which must not starve the
        # default executor that fsyncs and records progress.
        self._threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lane")

    async def fetch(self, host: str, port: int, request: ChunkRequest, sink: ChunkSink) -> None:
        """Receive in a lane thread; a cancel cuts the socket and returns once the thread has
        stopped, so no slice reaches the sink after the awaiting task has moved on."""
        conn = _Connection()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, self._receive, conn, host, port, request, sink)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            conn.abort()
            with contextlib.suppress(Exception):
                await future
            raise

    def _receive(
        self, conn: _Connection, host: str, port: int, request: ChunkRequest, sink: ChunkSink
    ) -> None:
        where = f"data channel {host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=self.idle_timeout)
        except OSError as exc:
            raise PeerError("peer-unreachable", f"{where}: {exc!r}") from None
        with sock:
            conn.adopt(sock)
            try:
                sock.sendall(encode(request) + b"\n")
                line, rest = _read_line(sock, where)
                header = decode_lane_reply(line)
                if isinstance(header, ErrorReply):
                    raise header.to_error()
                if not isinstance(header, ChunkHeader) or header.length != request.length:
                    raise PeerError("bad-chunk", f"asked for {request.length} bytes, got {header}")
                got = min(len(rest), request.length)
                if got:
                    sink.write(rest[:got])
                buf = memoryview(bytearray(RECV_SLICE))
                while got < request.length:
                    n = sock.recv_into(buf, min(RECV_SLICE, request.length - got))
                    if not n:
                        raise PeerError(
                            "peer-unreachable", f"{where} closed at {got}/{request.length}"
                        )
                    sink.write(buf[:n])
                    got += n
            except OSError as exc:  # reset, timeout, or cut by a cancel
                raise PeerError("peer-unreachable", f"{where}: {exc!r}") from None

    async def entries(
        self, host: str, port: int, request: StreamRequest
    ) -> AsyncGenerator[EntryHeader | bytes, None]:
        async with self._open(host, port, request) as (reader, where):
            while not isinstance(header := await self._header(reader, where), StreamEnd):
                if not isinstance(header, EntryHeader):
                    raise PeerError("bad-message", f"expected an entry, got {header}")
                yield header
                async for data in self._exactly(reader, header.size, where):
                    yield data

    @contextlib.asynccontextmanager
    async def _open(
        self, host: str, port: int, request: LaneRequest
    ) -> AsyncIterator[tuple[asyncio.StreamReader, str]]:
        where = f"data channel {host}:{port}"
        try:
            async with asyncio.timeout(self.idle_timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=STREAM_BUFFER)
        except (OSError, TimeoutError) as exc:
            raise PeerError("peer-unreachable", f"{where}: {exc!r}") from None
        try:
            writer.write(encode(request) + b"\n")
            async with asyncio.timeout(self.idle_timeout):
                await writer.drain()
            yield reader, where
        except (OSError, TimeoutError, ValueError) as exc:
            raise PeerError("peer-unreachable", f"{where}: {exc!r}") from None
        finally:
            writer.close()

    async def _header(self, reader: asyncio.StreamReader, where: str) -> LaneReply:
        async with asyncio.timeout(self.idle_timeout):
            line = await reader.readline()
        if not line:
            raise PeerError("peer-unreachable", f"{where} closed before a header")
        header = decode_lane_reply(line)
        if isinstance(header, ErrorReply):
            raise header.to_error()
        return header

    async def _exactly(
        self, reader: asyncio.StreamReader, length: int, where: str
    ) -> AsyncGenerator[bytes, None]:
        remaining = length
        while remaining:
            async with asyncio.timeout(self.idle_timeout):
                data = await reader.read(min(RECV_SLICE, remaining))
            if not data:
                got = length - remaining
                raise PeerError("peer-unreachable", f"{where} closed at {got}/{length}")
            remaining -= len(data)
            yield data


def _read_line(sock: socket.socket, where: str) -> tuple[bytes, bytes]:
    """The reply line, and whatever bytes of the body came in with it."""
    buf = b""
    while b"\n" not in buf:
        if len(buf) > MAX_LANE_LINE:
            raise PeerError("bad-message", f"{where} sent a header line over {MAX_LANE_LINE} bytes")
        more = sock.recv(MAX_LANE_LINE)
        if not more:
            raise PeerError("peer-unreachable", f"{where} closed before a header")
        buf += more
    line, rest = buf.split(b"\n", 1)
    return line, rest
