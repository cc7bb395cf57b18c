"""Sockets: the QUIC control plane (aioquic) and the TCP fast lane for file bytes.

Control messages are small JSON requests, each on its own QUIC bidirectional stream; either end
of a connection may send requests. Bulk bytes do not ride QUIC: pure-Python aioquic tops out
around 12 MiB/s at LAN MTUs (shared/reference/QUIC_PERF.md), so chunks go over plain TCP with
`sendfile`. A data request must carry the token the serving peer handed out over its
authenticated QUIC session, and every chunk is checked against the SHA-256 that the validated
descriptor carries, so the fast lane trusts nothing it did not verify.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from peer.errors import PeerError
from peer.identity import Identity
from peer.wire import ALPN, Message, decode, encode, error_reply

RequestHandler = Callable[["ControlConnection", Message], Awaitable[Message]]
ClosedHandler = Callable[["ControlConnection"], None]


def split_addr(addr: str) -> tuple[str, int]:
    """Parse `host:port` (IPv4 or hostname) as typed by a user or sent by a peer."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PeerError("bad-address", f"invalid address {addr!r}; expected HOST:PORT")
    return host, int(port_text)


def _quic_config(identity: Identity, is_client: bool, idle_timeout: float) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client, alpn_protocols=[ALPN], idle_timeout=idle_timeout
    )
    if is_client:
        # Peers use self-signed certificates and identify each other by peer id in Hello;
        # there is no CA on a LAN party to pin against.
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_cert_chain(identity.cert_path, identity.key_path)
    return config


class ControlConnection(QuicConnectionProtocol):
    """One QUIC connection to a peer, carrying JSON requests in both directions."""

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        on_request: RequestHandler,
        on_closed: ClosedHandler,
        request_timeout: float,
    ) -> None:
        super().__init__(quic, stream_handler)
        self._on_request = on_request
        self._on_closed = on_closed
        self._request_timeout = request_timeout
        self._buffers: dict[int, bytearray] = {}
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.peer_id: str | None = None

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            buf = self._buffers.setdefault(event.stream_id, bytearray())
            buf += event.data
            if event.end_stream:
                data = bytes(self._buffers.pop(event.stream_id))
                future = self._pending.pop(event.stream_id, None)
                if future is not None:
                    if not future.done():
                        future.set_result(data)
                else:
                    task = asyncio.ensure_future(self._serve_request(event.stream_id, data))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            return
        super().quic_event_received(event)
        if isinstance(event, ConnectionTerminated):
            self._mark_closed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._mark_closed()

    def _mark_closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PeerError("peer-unreachable", "connection closed"))
        self._pending.clear()
        self._on_closed(self)

    async def _serve_request(self, stream_id: int, data: bytes) -> None:
        try:
            reply = await self._on_request(self, decode(data))
        except PeerError as exc:
            reply = error_reply(exc)
        if not self.closed:
            self._quic.send_stream_data(stream_id, encode(reply), end_stream=True)
            self.transmit()

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """Send one request and wait for its reply; refuses cleanly if the peer is gone."""
        if self.closed:
            raise PeerError("peer-unreachable", "connection closed")
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        self._quic.send_stream_data(stream_id, encode(message), end_stream=True)
        self.transmit()
        try:
            async with asyncio.timeout(timeout or self._request_timeout):
                data = await future
        except TimeoutError:
            self._pending.pop(stream_id, None)
            raise PeerError("peer-unreachable", f"no reply to {message['type']}") from None
        return decode(data)


class ControlEndpoint:
    """Listens for QUIC connections and opens them, sharing one set of callbacks."""

    def __init__(
        self,
        identity: Identity,
        on_request: RequestHandler,
        on_closed: ClosedHandler,
        request_timeout: float,
        idle_timeout: float,
    ) -> None:
        self._identity = identity
        self._on_request = on_request
        self._on_closed = on_closed
        self._request_timeout = request_timeout
        self._idle_timeout = idle_timeout
        self._server: QuicServer | None = None
        self.port = 0

    def _protocol(self, quic: QuicConnection, stream_handler: Any = None) -> ControlConnection:
        return ControlConnection(
            quic,
            stream_handler,
            on_request=self._on_request,
            on_closed=self._on_closed,
            request_timeout=self._request_timeout,
        )

    async def listen(self, host: str, port: int) -> int:
        config = _quic_config(self._identity, is_client=False, idle_timeout=self._idle_timeout)
        self._server = await serve(host, port, configuration=config, create_protocol=self._protocol)
        transport = self._server._transport
        assert transport is not None
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.port

    async def connect(self, host: str, port: int, timeout: float) -> ControlConnection:
        loop = asyncio.get_running_loop()
        config = _quic_config(self._identity, is_client=True, idle_timeout=self._idle_timeout)
        config.server_name = host
        try:
            infos = await loop.getaddrinfo(host, port, type=0)
            remote = infos[0][4]
            quic = QuicConnection(configuration=config)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: self._protocol(quic), local_addr=("0.0.0.0", 0)
            )
            protocol.connect((remote[0], remote[1]))
            async with asyncio.timeout(timeout):
                await protocol.wait_connected()
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise PeerError("connect-failed", f"cannot reach {host}:{port}: {exc!r}") from None
        assert isinstance(protocol, ControlConnection)
        return protocol

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


class RateLimiter:
    """A token bucket shared by all uploads of a peer (`--max-upload-rate`)."""

    def __init__(self, bytes_per_s: int | None) -> None:
        self.rate = bytes_per_s
        self._allowance = float(bytes_per_s or 0)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: int) -> None:
        if not self.rate:
            return
        async with self._lock:
            now = time.monotonic()
            self._allowance = min(
                float(self.rate), self._allowance + (now - self._last) * self.rate
            )
            self._last = now
            self._allowance -= amount
            if self._allowance < 0:
                await asyncio.sleep(-self._allowance / self.rate)


# Fast lane ------------------------------------------------------------------------------------

DataGate = Callable[[Message], tuple[Path, int, int]]
SEND_SLICE = 1024 * 1024
RECV_SLICE = 1024 * 1024


async def serve_data(host: str, port: int, gate: DataGate, limiter: RateLimiter) -> asyncio.Server:
    """Serve chunk requests: one JSON line in, one JSON header line plus raw bytes out."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise PeerError("bad-message", "request must be an object")
                path, offset, length = gate(request)
            except (PeerError, ValueError) as exc:
                refusal = exc if isinstance(exc, PeerError) else PeerError("bad-message", str(exc))
                writer.write(encode(error_reply(refusal)) + b"\n")
                await writer.drain()
                return
            writer.write(encode({"type": "chunk", "length": length}) + b"\n")
            await writer.drain()
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
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


async def fetch_chunk(
    host: str,
    port: int,
    request: Message,
    write: Callable[[int, bytes], None],
    idle_timeout: float,
) -> int:
    """Fetch one chunk, handing each received slice to `write(relative_offset, data)`."""
    try:
        async with asyncio.timeout(idle_timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        raise PeerError("peer-unreachable", f"data channel {host}:{port}: {exc!r}") from None
    try:
        writer.write(encode(request) + b"\n")
        await writer.drain()
        async with asyncio.timeout(idle_timeout):
            header = json.loads(await reader.readline() or b"null")
        if not isinstance(header, dict):
            raise PeerError("peer-unreachable", "data channel closed before a header")
        if header.get("type") == "error":
            raise PeerError(str(header.get("code")), str(header.get("message")))
        length = int(header["length"])
        received = 0
        while received < length:
            async with asyncio.timeout(idle_timeout):
                data = await reader.read(min(RECV_SLICE, length - received))
            if not data:
                raise PeerError("peer-unreachable", f"data channel closed at {received}/{length}")
            write(received, data)
            received += len(data)
        return received
    except (OSError, TimeoutError, ValueError, KeyError) as exc:
        raise PeerError("peer-unreachable", f"data channel {host}:{port}: {exc!r}") from None
    finally:
        writer.close()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
