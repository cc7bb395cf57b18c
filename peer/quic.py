"""The QUIC control plane (aioquic): one typed request per bidirectional stream, both ways.

Only control rides QUIC. Bulk bytes go over the fast lane (`transfer/lane.py`): pure-Python
aioquic tops out around 12 MiB/s at LAN MTUs (shared/reference/QUIC_PERF.md).

Every request is decoded into a `protocol` message before the handler sees it, and every
request gets exactly one reply: a refusal, or any exception in the handler, becomes an
`ErrorReply` (code `internal` for the unexpected), so the asker never waits out a timeout.
Both ends present their certificate in the handshake (mutual TLS), so `proven_peer_id` is the
id the other end holds the key of; `links.py` refuses a Hello that claims another.

What a host can make us buffer is bounded before anything is decoded: per stream (one message),
per connection (a few messages), and tighter for a stranger (a connection that has not yet
introduced itself): one Hello's worth on at most two streams. A connection over a bound is
closed. How many strangers an endpoint admits, and dialling, are `endpoint.py`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from peer.errors import PeerError
from peer.identity import fingerprint
from peer.protocol import (
    MAX_INTRO_BYTES,
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
ArrivalHandler = Callable[["ControlConnection", str], None]

MAX_OPEN_STREAMS = 64  # messages being received at once on one introduced connection
MAX_CONNECTION_BYTES = 4 * MAX_MESSAGE_BYTES  # buffered at once on one introduced connection
MAX_STRANGER_STREAMS = 2  # a stranger sends its Hello, or awaits our HelloAck


def split_addr(addr: str) -> tuple[str, int]:
    """Parse `host:port` (IPv4 or hostname) as typed by a user or sent by a peer."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PeerError("bad-address", f"invalid address {addr!r}; expected HOST:PORT")
    return host, int(port_text)


def _ask_for_client_certificate(quic: QuicConnection) -> None:
    """Make a server-side connection request the client's certificate (mutual TLS).

    aioquic can do it (the client answers with the certificate it was configured with and
    signs the handshake) but only exposes the switch on the TLS context it builds when the
    first packet arrives, so it is set right after. Pinned by tests/test_quic.py
    (`test_both_ends_prove_their_ids_in_the_handshake`).
    """
    initialize = quic._initialize

    def initialize_and_ask(peer_cid: bytes) -> None:
        initialize(peer_cid)
        quic.tls._request_client_certificate = True

    quic._initialize = initialize_and_ask  # type: ignore[method-assign]


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
        if not quic.configuration.is_client:
            _ask_for_client_certificate(quic)
        self._on_request = on_request
        self._on_closed = on_closed
        self._request_timeout = request_timeout
        self._buffers: dict[int, bytearray] = {}
        self._buffered = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.peer_id: str | None = None
        self.on_arrival: ArrivalHandler | None = None  # told the remote host on first packet

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self.on_arrival is not None:
            arrived, self.on_arrival = self.on_arrival, None
            arrived(self, str(addr[0]))
        super().datagram_received(data, addr)

    @property
    def dialled(self) -> bool:
        """Whether we dialled this link (the QUIC client end)."""
        return bool(self._quic.configuration.is_client)

    @property
    def proven_peer_id(self) -> str | None:
        """The peer id whose key the other end proved in the handshake, if it showed one."""
        tls = getattr(self._quic, "tls", None)
        certificate = getattr(tls, "_peer_certificate", None)
        return None if certificate is None else fingerprint(certificate)

    def _over_bounds(self, stream_id: int, more: int) -> bool:
        stranger = self.peer_id is None
        streams = len(self._buffers) + (stream_id not in self._buffers)
        if streams > (MAX_STRANGER_STREAMS if stranger else MAX_OPEN_STREAMS):
            return True
        per_stream = MAX_INTRO_BYTES if stranger else MAX_MESSAGE_BYTES
        if len(self._buffers.get(stream_id, b"")) + more > per_stream:
            return True
        return self._buffered + more > (MAX_INTRO_BYTES if stranger else MAX_CONNECTION_BYTES)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._received(event.stream_id, event.data, event.end_stream)
            return
        super().quic_event_received(event)
        if isinstance(event, ConnectionTerminated):
            self._mark_closed()

    def _received(self, stream_id: int, data: bytes, end: bool) -> None:
        if self.closed:
            return
        if self._over_bounds(stream_id, len(data)):
            self.abort("it sends more than it may")
            return
        self._buffers.setdefault(stream_id, bytearray()).extend(data)
        self._buffered += len(data)
        if not end:
            return
        whole = bytes(self._buffers.pop(stream_id))
        self._buffered -= len(whole)
        future = self._pending.pop(stream_id, None)
        if future is not None:
            if not future.done():
                future.set_result(whole)
            return
        if self._ours(stream_id):  # a reply to a request that timed out: nobody waits for it
            return
        task = asyncio.ensure_future(self._serve_request(stream_id, whole))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ours(self, stream_id: int) -> bool:
        """Whether we opened the stream (its low bit names the initiator: 0 the client). On a
        stream of ours the other end only ever answers; it is never a request to serve, and
        we have already sent our FIN on it."""
        return (stream_id & 1) == (0 if self._quic.configuration.is_client else 1)

    def abort(self, why: str) -> None:
        """Close at once, dropping whatever was buffered."""
        if self.closed:
            return
        log.warning("closing a connection", peer_id=self.peer_id, why=why)
        self._buffers.clear()
        self._buffered = 0
        self.close()
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
        reply: Reply
        try:
            reply = await self._on_request(self, decode_request(data))
        except PeerError as exc:
            reply = ErrorReply.of(exc)
        except Exception as exc:
            log.exception("request handler crashed", peer_id=self.peer_id)
            reply = ErrorReply("internal", f"{type(exc).__name__}: {exc}"[:4096])
        if self.closed:
            return
        try:
            self._quic.send_stream_data(stream_id, _encoded(reply), end_stream=True)
        except (RuntimeError, ValueError) as exc:  # the stream or connection ended meanwhile
            log.info("reply not sent", peer_id=self.peer_id, stream_id=stream_id, why=str(exc))
            return
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


def _encoded(reply: Reply) -> bytes:
    """The reply's bytes, or, when it cannot be encoded (a string the wire cannot carry), an
    `internal` error's: a reply that cannot be produced is still answered."""
    try:
        return encode(reply)
    except Exception as exc:
        log.exception("a reply could not be encoded", type=type(reply).__name__)
        why = f"the {type(reply).__name__} reply could not be encoded: {type(exc).__name__}"
        return encode(ErrorReply("internal", why))
