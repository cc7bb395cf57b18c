"""The fast lane's serving end: chunks with `sendfile`, streamed installs, an upload cap.

A request is one JSON line (`ChunkRequest` or `StreamRequest`, with the data token); the reply
is one JSON line (`ChunkHeader`, `EntryHeader`s or `ErrorReply`) and the raw bytes. Whoever
asks may stop reading, never ask, or open many connections: each connection is reserved from
the budgets (`peer.budgets`) before its request is read, and each step after that runs under a
progress deadline, so a stalled asker is cut, its child killed and its descriptors closed.

A granted chunk is sent by a serving thread (`send_chunk`, `peer.transfer.senders`), as the
asking end receives it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import structlog

from peer.budgets import Budgets, Tally
from peer.errors import PeerError
from peer.files import open_regular
from peer.protocol import (
    MAX_LANE_LINE,
    ChunkHeader,
    ChunkRequest,
    ErrorReply,
    LaneReply,
    StreamRequest,
    decode_lane_request,
    encode,
)
from peer.transfer.senders import Blocking, to_asker

log = structlog.get_logger("lane")

SEND_SLICE = 1024 * 1024

Authorize = Callable[[ChunkRequest], tuple[Path, int, int]]
# A granted stream: the coroutine that writes its frames to the asker, given the writer, the
# handler's progress deadline (touch it whenever bytes moved) and the budgets' tally.
SendStream = Callable[[asyncio.StreamWriter, "Progress", Tally, str], Awaitable[None]]
OpenStream = Callable[[StreamRequest], SendStream]


class Progress:
    """A deadline that moves: the handler is cancelled (TimeoutError) unless bytes moved within
    `seconds` of the last `moved()`. Any awaited step of a handler can stall on a reader that
    stopped reading or a child that stopped writing; this one bound covers them all."""

    def __init__(self, timeout: asyncio.Timeout, seconds: float) -> None:
        self._timeout, self.seconds = timeout, seconds

    def moved(self) -> None:
        self._timeout.reschedule(asyncio.get_running_loop().time() + self.seconds)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No deadline while we wait on ourselves (the upload cap), a fresh one after."""
        self._timeout.reschedule(None)
        try:
            yield
        finally:
            self.moved()


@contextlib.asynccontextmanager
async def progress_deadline(seconds: float) -> AsyncIterator[Progress]:
    async with asyncio.timeout(seconds) as timeout:
        yield Progress(timeout, seconds)


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
        self._books = threading.Lock()  # serving threads debit, each waiting out its own delay

    def debit(self, amount: int) -> float:
        """Take `amount` bytes of credit now; returns how long to wait before sending them."""
        if not self.rate:
            return 0.0
        with self._books:
            now = self._clock()
            allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate)
            self._last = now
            self._allowance = allowance - amount
            return max(0.0, -self._allowance / self.rate)

    def piece(self, largest: int) -> int:
        """How much to send at once: `largest` uncapped; under a cap, about an eighth of a
        second's worth (at least 16 KiB), so a capped link is never silent for long. A piece
        of a second or more went unheard past the receiver's chunk idle timeout (S12 at
        128 KiB/s in 1 MiB pieces: 8 s of silence, then its chunk was given up)."""
        if not self.rate:
            return largest
        return max(16 * 1024, min(largest, self.rate // 8))


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
    host: str,
    port: int,
    authorize: Authorize,
    open_stream: OpenStream,
    limiter: RateLimiter,
    tally: Tally | None = None,
) -> LaneServer:
    """Serve lane requests: one request line in; a reply line, then the raw bytes, out.

    Each connection is reserved from the budgets before its request is read, and every step
    after that runs under a progress deadline: a stalled asker is cut (aborted, not closed, so
    unsent bytes cannot hold the socket), its child killed and its descriptors closed.
    """
    lane = LaneServer()
    tally = tally or Tally()
    budgets = tally.budgets

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        lane.handlers.add(task)
        task.add_done_callback(lane.handlers.discard)
        peer = writer.get_extra_info("peername")
        asker = str(peer[0]) if isinstance(peer, tuple) else "?"
        clean = False
        try:
            with tally.reserve(asker, "connection"):
                clean = await _serve_one(reader, writer, asker)
        except PeerError as exc:  # over budget: say so, within the deadline
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(budgets.progress_deadline):
                    await reply(writer, ErrorReply.of(exc))
                clean = True
        except (OSError, TimeoutError):
            pass  # the asker went away or stalled; nothing to tell it
        finally:
            if clean:
                writer.close()
            else:
                cut(writer)

    async def _serve_one(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, asker: str
    ) -> bool:
        """Serve one request; True when it ended cleanly (nothing left unsent)."""
        try:
            async with asyncio.timeout(budgets.request_deadline):
                line = await reader.readline()
        except TimeoutError:  # it never asked: nothing of ours is buffered, a close will do
            return True
        except ValueError:  # a request line longer than the stream's limit
            line = b""
            refused: PeerError | None = PeerError("bad-message", "request line too long")
        else:
            refused = None
        async with progress_deadline(budgets.progress_deadline) as progress:
            try:
                if refused is not None:
                    raise refused
                request = decode_lane_request(line)
                if isinstance(request, StreamRequest):
                    send_stream = open_stream(request)
                else:
                    path, offset, length = authorize(request)
            except PeerError as exc:
                await reply(writer, ErrorReply.of(exc))
                return True
            except Exception as exc:  # a gate that crashed still answers: never silence
                log.exception("lane request crashed")
                await reply(writer, ErrorReply("internal", f"{type(exc).__name__}"))
                return True
            if isinstance(request, StreamRequest):
                with tally.reserve(asker, "stream"):
                    await send_stream(writer, progress, tally, asker)
                return True
            with tally.reserve(asker, "file"), _open_regular(path) as f, progress.paused():
                # The thread keeps its own deadline: it knows when bytes move, the loop doesn't.
                header, file = ChunkHeader(length), f.fileno()
                await to_asker(
                    writer,
                    budgets.progress_deadline,
                    lambda b, sock: send_chunk(b, sock, header, file, offset, limiter, budgets),
                )
            return True

    lane.server = await asyncio.start_server(
        handle, host, port, reuse_address=True, limit=MAX_LANE_LINE
    )
    return lane


def _open_regular(path: Path) -> BinaryIO:
    """The granted file, never through a link (the gates resolve links inside the root; the
    bytes we send never come through one), or a refusal before any header."""
    try:
        return open(open_regular(path), "rb")
    except OSError as exc:
        raise PeerError("not-servable", f"{path.name} cannot be read here: {exc}") from None


def cut(writer: asyncio.StreamWriter) -> None:
    """End a connection whose asker stalled or vanished: reset, not closed, so neither our
    buffer nor the kernel's (an orphan in FIN_WAIT1 behind a zero window) keeps its bytes."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def reply(writer: asyncio.StreamWriter, message: LaneReply) -> None:
    writer.write(encode(message) + b"\n")
    await writer.drain()


def send_chunk(
    blocking: Blocking,
    sock: int,
    header: ChunkHeader,
    file: int,
    offset: int,
    limiter: RateLimiter,
    budgets: Budgets,
) -> None:
    """A granted chunk from a serving thread: its header line, then the range by `sendfile`,
    in slices the upload cap paces (a file that shrank under us sends a short chunk)."""
    blocking.write(sock, encode(header) + b"\n")
    piece = limiter.piece(budgets.send_slice)
    sent = 0
    while sent < header.length:
        size = min(piece, header.length - sent)
        blocking.pause(limiter.debit(size))
        n = blocking.sendfile(sock, file, offset + sent, size)
        if n < size:
            return
        sent += n
