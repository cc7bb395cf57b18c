"""The QUIC control plane (aioquic): one typed request per bidirectional stream, both ways.

Only control rides QUIC. Bulk bytes go over the fast lane (`transfer/lane.py`): pure-Python
aioquic tops out around 12 MiB/s at LAN MTUs (shared/reference/QUIC_PERF.md).

Every request is decoded into a `protocol` message before the handler sees it, and every
request gets exactly one reply: a refusal, or any exception in the handler, becomes an
`ErrorReply` (code `internal` for the unexpected), so the asker never waits out a timeout.
A stream may buffer at most one message's worth of bytes; a connection that sends more is
closed, so no host can make us buffer without limit.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from peer.errors import PeerError
from peer.identity import Identity
from peer.protocol import (
    ALPN,
    MAX_MESSAGE_BYTES,
    ErrorReply,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode,
)

log = structlog.get_logger("quic")

RequestHandler = Callable[["ControlConnection", Request], Awaitable[Reply]]
ClosedHandler = Callable[["ControlConnection"], None]

MAX_OPEN_STREAMS = 64  # requests being received at once on one connection


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
    """One QUIC connection to a peer, carrying typed requests in both directions."""

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
            self._received(event.stream_id, event.data, event.end_stream)
            return
        super().quic_event_received(event)
        if isinstance(event, ConnectionTerminated):
            self._mark_closed()

    def _received(self, stream_id: int, data: bytes, end: bool) -> None:
        buf = self._buffers.setdefault(stream_id, bytearray())
        if len(buf) + len(data) > MAX_MESSAGE_BYTES or len(self._buffers) > MAX_OPEN_STREAMS:
            log.warning("closing a connection that sends too much", peer_id=self.peer_id)
            self._buffers.clear()
            self.close()
            self._mark_closed()
            return
        buf += data
        if not end:
            return
        whole = bytes(self._buffers.pop(stream_id))
        future = self._pending.pop(stream_id, None)
        if future is not None:
            if not future.done():
                future.set_result(whole)
            return
        task = asyncio.ensure_future(self._serve_request(stream_id, whole))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        reply: Reply
        try:
            reply = await self._on_request(self, decode_request(data))
        except PeerError as exc:
            reply = ErrorReply.of(exc)
        except Exception as exc:
            log.exception("request handler crashed", peer_id=self.peer_id)
            reply = ErrorReply("internal", f"{type(exc).__name__}: {exc}"[:4096])
        if not self.closed:
            self._quic.send_stream_data(stream_id, encode(reply), end_stream=True)
            self.transmit()

    async def request(self, message: Request | bytes, timeout: float | None = None) -> Reply:
        """Send one request and wait for its decoded reply; refuses cleanly if the peer is gone.

        Raw bytes are sent as they are: `peer.probe` asks questions no typed message may hold.
        """
        if self.closed:
            raise PeerError("peer-unreachable", "connection closed")
        stream_id = self._quic.get_next_available_stream_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        data = message if isinstance(message, bytes) else encode(message)
        self._quic.send_stream_data(stream_id, data, end_stream=True)
        self.transmit()
        try:
            async with asyncio.timeout(timeout or self._request_timeout):
                reply = await future
        except TimeoutError:
            self._pending.pop(stream_id, None)
            kind = type(message).__name__
            raise PeerError("peer-unreachable", f"no reply to {kind}") from None
        return decode_reply(reply)


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
        return int(transport.get_extra_info("sockname")[1])

    async def connect(self, host: str, port: int, timeout: float) -> ControlConnection:
        loop = asyncio.get_running_loop()
        config = _quic_config(self._identity, is_client=True, idle_timeout=self._idle_timeout)
        config.server_name = host
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=0)
                remote = infos[0][4]
                quic = QuicConnection(configuration=config)
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: self._protocol(quic), local_addr=("0.0.0.0", 0)
                )
                protocol.connect((remote[0], remote[1]))
                await protocol.wait_connected()
        except (OSError, TimeoutError, ConnectionError, UnicodeError, ValueError) as exc:
            raise PeerError("connect-failed", f"cannot reach {host}:{port}: {exc!r}") from None
        assert isinstance(protocol, ControlConnection)
        return protocol

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
