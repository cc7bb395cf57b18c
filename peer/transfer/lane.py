"""The fast lane: chunk bytes over plain TCP, both ends of it.

A request is one JSON line (`protocol.ChunkRequest`, carrying the serving peer's data token,
which it hands out only inside its QUIC Hello); the reply is one JSON line (`ChunkHeader` or
`ErrorReply`) and, when granted, exactly the asked bytes, sent with `sendfile`. Every chunk is
checked on arrival against the SHA-256 of the validated descriptor, so the lane needs no
encryption of its own to be safe against corruption or a lying peer.

The client side hands each chunk's bytes to a `ChunkSink` the fetcher gives it (which writes
and hashes them), so a test can put an in-memory lane in its place. `TcpLane` receives a chunk
in a thread of its own with blocking `recv_into` a reused buffer, and the sink runs in that
thread too: `recv_into`, `os.pwrite` and `hashlib` release the GIL, so two chunks in flight
use two cores, and no byte is copied through asyncio's stream buffers or hashed on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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
    decode_lane_request,
    encode,
)

log = structlog.get_logger("lane")

SEND_SLICE = 1024 * 1024
RECV_SLICE = 1024 * 1024
REQUEST_TIMEOUT = 30.0  # a connection must send its request line within this

Authorize = Callable[[ChunkRequest], tuple[Path, int, int]]
# A granted stream: the coroutine that writes its frames to the asker, given the writer.
OpenStream = Callable[[StreamRequest], Callable[[asyncio.StreamWriter], Awaitable[None]]]


class RateLimiter:
    """A token bucket shared by all uploads of a peer (`--max-upload-rate`).

    The bucket holds at most one second of credit, so a long idle spell does not turn into a
    burst, and concurrent uploads draw from the same bucket, so their sum obeys the cap.
    """

    def __init__(self, bytes_per_s: int | None, clock: Callable[[], float] = time.monotonic):
        self.rate = bytes_per_s
        self._clock = clock
        self._allowance = float(bytes_per_s or 0)
        self._last = clock()
        self._lock = asyncio.Lock()

    def debit(self, amount: int) -> float:
        """Take `amount` bytes of credit now; returns how long to wait before sending them."""
        if not self.rate:
            return 0.0
        now = self._clock()
        self._allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate)
        self._last = now
        self._allowance -= amount
        return max(0.0, -self._allowance / self.rate)

    async def acquire(self, amount: int) -> None:
        async with self._lock:
            delay = self.debit(amount)
            if delay:
                await asyncio.sleep(delay)


class LaneServer:
    """The listening lane and the requests it is serving, so that closing it ends them too
    (a stream's provider process is killed on the way out)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)


async def serve_lane(
    host: str, port: int, authorize: Authorize, open_stream: OpenStream, limiter: RateLimiter
) -> LaneServer:
    """Serve lane requests: one request line in; a reply line, then the raw bytes, out."""
    lane = LaneServer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        lane.handlers.add(task)
        task.add_done_callback(lane.handlers.discard)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                line = await reader.readline()
            try:
                request = decode_lane_request(line)
                if isinstance(request, StreamRequest):
                    send_stream = open_stream(request)
                else:
                    path, offset, length = authorize(request)
            except PeerError as exc:
                await reply(writer, ErrorReply.of(exc))
                return
            except Exception as exc:  # a gate that crashed still answers: never silence
                log.exception("lane request crashed")
                await reply(writer, ErrorReply("internal", f"{type(exc).__name__}"))
                return
            if isinstance(request, StreamRequest):
                await send_stream(writer)
                return
            await reply(writer, ChunkHeader(length))
            await _send_range(writer, path, offset, length, limiter)
        except ValueError:  # a request line longer than the stream's limit
            await reply(writer, ErrorReply("bad-message", "request line too long"))
        except (OSError, TimeoutError):
            pass  # the asker went away; nothing to tell it
        finally:
            writer.close()

    lane.server = await asyncio.start_server(
        handle, host, port, reuse_address=True, limit=MAX_LANE_LINE
    )
    return lane


async def reply(writer: asyncio.StreamWriter, message: LaneReply) -> None:
    writer.write(encode(message) + b"\n")
    await writer.drain()


async def _send_range(
    writer: asyncio.StreamWriter, path: Path, offset: int, length: int, limiter: RateLimiter
) -> None:
    loop = asyncio.get_running_loop()
    # Slices only when a cap needs them: each loop.sendfile call has a fixed cost (it waits for
    # the transport's buffer to drain), and uncapped, one call sends the whole range.
    slice_size = SEND_SLICE if limiter.rate else max(length, 1)
    with open(path, "rb") as f:
        sent = 0
        while sent < length:
            piece = min(slice_size, length - sent)
            await limiter.acquire(piece)
            if writer.transport.is_closing():
                return  # the asker went away: a copy that lost the end game, or a crash
            n = await loop.sendfile(writer.transport, f, offset + sent, piece)
            if n == 0:
                break
            sent += n


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
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_LANE_LINE)
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
