"""The fast lane's asking end: chunk bytes and streamed entries over plain TCP.

A request is one JSON line (`protocol.ChunkRequest`, carrying the serving peer's data token,
which it hands out only inside its QUIC Hello); the reply is one JSON line (`ChunkHeader` or
`ErrorReply`) and, when granted, exactly the asked bytes, sent with `sendfile`. Every chunk is
checked on arrival against the digest (BLAKE3) of the validated descriptor, so the lane needs no
encryption of its own to be safe against corruption or a lying peer.

The serving end is `upload.py`. This end hands each chunk's bytes to a `ChunkSink` the fetcher
gives it (which writes and hashes them), and a stream's entries to a `StreamSink`, so a test
can put an in-memory lane in its place. `TcpLane` receives each chunk or stream in a thread of
its own with blocking `recv_into` a reused buffer, and the sink runs in that thread too:
`recv_into`, `os.pwrite` and `blake3` release the GIL, so two transfers in flight use two
cores, and no byte is copied through asyncio's stream buffers or hashed on the loop (a stream
received on the loop ran at 0.30 of `unrar p`, issue 20).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog

from peer.blocking import in_thread
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


class ChunkSink(Protocol):
    def write(self, data: memoryview | bytes) -> None:
        """Take the next slice of a chunk (blocking; `TcpLane` calls it from its own thread,
        and the slice's buffer is reused once this returns)."""


class StreamSink(Protocol):
    """Where a stream's entries go; `TcpLane` calls it from its own thread, in order."""

    def entry(self, header: EntryHeader) -> None:
        """The next entry begins (the previous one, if any, has had all its bytes)."""

    def write(self, data: memoryview | bytes) -> None:
        """The next slice of the current entry (its buffer is reused once this returns)."""

    def end(self) -> None:
        """The stream ended where the source said it ends."""


class Lane(Protocol):
    async def fetch(self, host: str, port: int, request: ChunkRequest, sink: ChunkSink) -> None:
        """Hand the bytes of one granted chunk to `sink`, in order, never more than asked."""
        ...

    async def stream(self, host: str, port: int, request: StreamRequest, sink: StreamSink) -> None:
        """Hand each entry's header, then its bytes, to `sink`, until the stream's end."""
        ...


class _Connection:
    """A lane thread's socket, shared with the task awaiting it so that a cancel can cut it."""

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


class _Frames:
    """The replies on one lane connection, read with blocking calls: header lines, and bodies
    of a known length handed on slice by slice from one reused buffer."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock, self.where = sock, where
        self.rest = b""  # bytes read past the last header line
        self.buf = memoryview(bytearray(RECV_SLICE))

    def header(self) -> LaneReply:
        reply = decode_lane_reply(self.line())
        if isinstance(reply, ErrorReply):
            raise reply.to_error()
        return reply

    def line(self) -> bytes:
        """The next header line; what came in behind it stays in `rest`."""
        while b"\n" not in self.rest:
            if len(self.rest) > MAX_LANE_LINE:
                raise PeerError(
                    "bad-message", f"{self.where} sent a header line over {MAX_LANE_LINE} bytes"
                )
            more = self.sock.recv(MAX_LANE_LINE)
            if not more:
                raise PeerError("peer-unreachable", f"{self.where} closed before a header")
            self.rest += more
        line, self.rest = self.rest.split(b"\n", 1)
        return line

    def body(self, length: int, write: Callable[[memoryview | bytes], None]) -> None:
        got = min(len(self.rest), length)
        if got:
            write(self.rest[:got])
            self.rest = self.rest[got:]
        while got < length:
            n = self.sock.recv_into(self.buf, min(RECV_SLICE, length - got))
            if not n:
                raise PeerError("peer-unreachable", f"{self.where} closed at {got}/{length}")
            write(self.buf[:n])
            got += n


class TcpLane:
    """The real lane: one TCP connection per chunk, or per stream, each received in a lane
    thread of its own."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        # Own threads: a chunk holds one for its whole transfer, which must not starve the
        # default executor that fsyncs and records progress.
        self._threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lane")

    async def fetch(self, host: str, port: int, request: ChunkRequest, sink: ChunkSink) -> None:
        def receive(frames: _Frames) -> None:
            header = frames.header()
            if not isinstance(header, ChunkHeader) or header.length != request.length:
                raise PeerError("bad-chunk", f"asked for {request.length} bytes, got {header}")
            frames.body(request.length, sink.write)

        await self._in_thread(host, port, request, receive)

    async def stream(self, host: str, port: int, request: StreamRequest, sink: StreamSink) -> None:
        def receive(frames: _Frames) -> None:
            while not isinstance(header := frames.header(), StreamEnd):
                if not isinstance(header, EntryHeader):
                    raise PeerError("bad-message", f"expected an entry, got {header}")
                sink.entry(header)
                frames.body(header.size, sink.write)
            sink.end()

        await self._in_thread(host, port, request, receive)

    async def _in_thread(
        self, host: str, port: int, request: LaneRequest, receive: Callable[[_Frames], None]
    ) -> None:
        """Receive in a lane thread; a cancel cuts the socket and returns once the thread has
        stopped, so nothing reaches a sink after the awaiting task has moved on."""
        conn = _Connection()
        args = (conn, host, port, request, receive)
        await in_thread(self._receive, *args, executor=self._threads, stop=conn.abort)

    def _receive(
        self,
        conn: _Connection,
        host: str,
        port: int,
        request: LaneRequest,
        receive: Callable[[_Frames], None],
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
                receive(_Frames(sock, where))
            except OSError as exc:  # reset, timeout, or cut by a cancel
                raise PeerError("peer-unreachable", f"{where}: {exc!r}") from None
