"""A QUIC endpoint: listening for peers and dialling them (aioquic).

It admits strangers (connections not yet introduced) within bounds: at most `MAX_STRANGERS`
at once and `MAX_STRANGERS_PER_HOST` from one remote host (`strangers.py`: a newcomer displaces
the oldest stranger of the host holding the most, so one host cannot lock the others out), each
closed unless it introduces itself within the request timeout. A dial whose handshake fails
closes its QUIC connection before its socket, so no timer of it outlives the socket.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from peer.errors import PeerError
from peer.identity import Identity
from peer.protocol import ALPN
from peer.quic import ClosedHandler, ControlConnection, RequestHandler
from peer.strangers import Strangers

MAX_STRANGERS = 8  # connections not yet introduced, at once, per endpoint
MAX_STRANGERS_PER_HOST = 4  # of those, from one remote host
DISPOSE_TIMEOUT = 5.0  # a failed handshake's QUIC close, before its socket goes anyway


def _quic_config(identity: Identity, is_client: bool, idle_timeout: float) -> QuicConfiguration:
    config = QuicConfiguration(
        is_client=is_client, alpn_protocols=[ALPN], idle_timeout=idle_timeout
    )
    # Certificates are self-signed: there is no CA on a LAN party. What a certificate proves is
    # its key, and the key is the peer id (`identity.fingerprint`), checked against Hello.
    config.verify_mode = ssl.CERT_NONE
    config.load_cert_chain(identity.cert_path, identity.key_path)
    return config


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
        self._strangers: Strangers[ControlConnection] = Strangers(
            MAX_STRANGERS, MAX_STRANGERS_PER_HOST
        )
        self._disposing: set[asyncio.Task[None]] = set()  # failed handshakes being closed

    def _protocol(self, quic: QuicConnection, stream_handler: Any = None) -> ControlConnection:
        conn = ControlConnection(
            quic,
            stream_handler,
            on_request=self._on_request,
            on_closed=self._on_closed,
            request_timeout=self._request_timeout,
        )
        if not quic.configuration.is_client:
            conn.on_arrival = self._admit
        return conn

    def _admit(self, conn: ControlConnection, host: str) -> None:
        """Bound the strangers (`strangers.py`): a newcomer is always admitted, displacing the
        oldest stranger of the busiest host when full, and given one request timeout to
        introduce itself."""
        self._strangers.keep(lambda c: c.peer_id is None and not c.closed)
        for evicted in self._strangers.admit(conn, host):
            evicted.abort(f"displaced by a newer stranger from {host} (too many strangers)")
        loop = asyncio.get_running_loop()

        def expire() -> None:
            self._strangers.discard(conn)
            if conn.peer_id is None:
                conn.abort("it did not introduce itself in time")

        loop.call_later(self._request_timeout, expire)

    async def listen(self, host: str, port: int) -> int:
        config = _quic_config(self._identity, is_client=False, idle_timeout=self._idle_timeout)
        self._server = await serve(host, port, configuration=config, create_protocol=self._protocol)
        transport = self._server._transport
        assert transport is not None
        return int(transport.get_extra_info("sockname")[1])

    async def connect(
        self, host: str, port: int, timeout: float, local_host: str = "0.0.0.0"
    ) -> ControlConnection:
        loop = asyncio.get_running_loop()
        config = _quic_config(self._identity, is_client=True, idle_timeout=self._idle_timeout)
        config.server_name = host
        transport: asyncio.DatagramTransport | None = None
        protocol: Any = None
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=0)
                remote = infos[0][4]
                quic = QuicConnection(configuration=config)
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: self._protocol(quic), local_addr=(local_host, 0)
                )
                protocol.connect((remote[0], remote[1]))
                await protocol.wait_connected()
        except (OSError, TimeoutError, ConnectionError, UnicodeError, ValueError) as exc:
            if transport is not None:  # a handshake that failed: free its socket, in order
                self._dispose(protocol, transport)
            raise PeerError("connect-failed", f"cannot reach {host}:{port}: {exc!r}") from None
        assert isinstance(protocol, ControlConnection)
        return protocol

    def _dispose(self, protocol: Any, transport: asyncio.DatagramTransport) -> None:
        """Close a connection whose handshake failed, then its socket. Closing the socket
        first would leave aioquic's timer to fire on a dead transport ("Exception in callback
        _handle_timer"); the QUIC close ends the timers, briefly, so it runs on its own."""

        # aioquic fails the (shielded) handshake waiter when the close completes; our wait on
        # it is gone, so retrieve that error here or asyncio reports it as never retrieved.
        waiter = getattr(protocol, "_connected_waiter", None)
        if waiter is not None:
            waiter.add_done_callback(lambda f: f.cancelled() or f.exception())

        async def dispose() -> None:
            try:
                protocol.close()
                async with asyncio.timeout(DISPOSE_TIMEOUT):
                    await protocol.wait_closed()
            except (TimeoutError, OSError):
                pass
            finally:
                transport.close()

        task = asyncio.ensure_future(dispose())
        self._disposing.add(task)
        task.add_done_callback(self._disposing.discard)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
