"""The fast lane: chunk bytes over plain TCP, both ends of it.

A request is one JSON line (`protocol.ChunkRequest`, carrying the serving peer's data token,
which it hands out only inside its QUIC Hello); the reply is one JSON line (`ChunkHeader` or
`ErrorReply`) and, when granted, exactly the asked bytes, sent with `sendfile`. Every chunk is
checked on arrival against the SHA-256 of the validated descriptor, so the lane needs no
encryption of its own to be safe against corruption or a lying peer.

The client side is pull-style: `TcpLane.fetch` yields the received slices and the fetcher does
its own writing and hashing, so a test can put an in-memory lane in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
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
    with open(path, "rb") as f:
        sent = 0
        while sent < length:
            piece = min(SEND_SLICE, length - sent)
            await limiter.acquire(piece)
            n = await loop.sendfile(writer.transport, f, offset + sent, piece)
            if n == 0:
                break
            sent += n


class Lane(Protocol):
    def fetch(self, host: str, port: int, request: ChunkRequest) -> AsyncGenerator[bytes, None]:
        """Yield the bytes of one granted chunk, slice by slice, never more than asked."""
        ...

    def entries(
        self, host: str, port: int, request: StreamRequest
    ) -> AsyncGenerator[EntryHeader | bytes, None]:
        """Yield each entry's header, then its bytes slice by slice, until the stream's end."""
        ...


class TcpLane:
    """The real lane: one TCP connection per chunk, or per stream."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout

    async def fetch(
        self, host: str, port: int, request: ChunkRequest
    ) -> AsyncGenerator[bytes, None]:
        async with self._open(host, port, request) as (reader, where):
            header = await self._header(reader, where)
            if not isinstance(header, ChunkHeader) or header.length != request.length:
                raise PeerError("bad-chunk", f"asked for {request.length} bytes, got {header}")
            async for data in self._exactly(reader, request.length, where):
                yield data

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
