"""mDNS discovery (zeroconf): announce this peer and dial the peers it hears about.

Only discovery rides mDNS; everything a peer learns about another still comes from the QUIC
Hello, so a forged announcement can at most make us dial an address. Of two peers that hear
each other, only the one with the smaller peer id dials, so they end up with one connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from zeroconf import IPVersion, NonUniqueNameException, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peer.protocol import PROTOCOL_VERSION

SERVICE_TYPE = "_lanpeer._udp.local."
log = structlog.get_logger("discovery")

Found = Callable[[str, str], None]  # (peer_id, "host:port")


def should_dial(my_peer_id: str, their_peer_id: str) -> bool:
    """The tie-break that keeps two mutually discovering peers to one connection.

    Our own id heard from another address is a second process holding our key (a copied
    state dir): dial it, so that the Hello exchange reports the duplicate on both sides.
    """
    return my_peer_id <= their_peer_id


def parse_announcement(
    properties: Mapping[bytes, bytes | None], addresses: list[str], port: int | None
) -> tuple[str, str] | None:
    """(peer_id, addr) from a resolved service, or None if it is not a compatible lanpeer."""
    peer_id = (properties.get(b"peer_id") or b"").decode(errors="replace")
    proto = (properties.get(b"proto_ver") or b"").decode(errors="replace")
    if len(peer_id) != 32 or proto != str(PROTOCOL_VERSION) or not addresses or not port:
        return None
    return peer_id, f"{addresses[0]}:{port}"


class Discovery:
    def __init__(self, peer_id: str, host: str, port: int, on_found: Found) -> None:
        self.peer_id = peer_id
        self.host = host
        self.port = port
        self.on_found = on_found
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._azc = AsyncZeroconf(interfaces=[self.host], ip_version=IPVersion.V4Only)
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"lanpeer-{self.peer_id}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(self.host)],
            port=self.port,
            properties={"peer_id": self.peer_id, "proto_ver": str(PROTOCOL_VERSION)},
            server=f"lanpeer-{self.peer_id}.local.",
        )
        self._browser = AsyncServiceBrowser(
            self._azc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )
        try:
            await self._azc.async_register_service(info)
        except NonUniqueNameException:
            # Another process announces our id (a copied state dir). Keep browsing: we hear
            # its announcement, dial it, and Hello reports the duplicate on both sides.
            log.warning("another peer announces our peer id", peer_id=self.peer_id)

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = asyncio.ensure_future(self._resolve(zeroconf, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zeroconf, 3000):
            return
        found = parse_announcement(info.properties, info.parsed_addresses(), info.port)
        if found is not None and found != (self.peer_id, f"{self.host}:{self.port}"):
            self.on_found(*found)  # our id at another address is a clone: `should_dial` dials it

    async def close(self) -> None:
        tasks: list[Any] = list(self._tasks)
        for task in tasks:
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._azc is not None:
            await self._azc.async_unregister_all_services()
            await self._azc.async_close()


def advertised_host(host: str) -> str:
    """The address others should dial: the bound host, or this machine's primary address."""
    if host not in ("0.0.0.0", ""):
        return host
    try:
        named = socket.gethostbyname(socket.gethostname())
    except OSError:
        named = "127.0.0.1"
    if not named.startswith("127."):
        return named  # e.g. a container's address on its network
    # Debian maps the host name to 127.0.1.1. Ask the kernel which source address it would use
    # for the mDNS group instead: connecting a UDP socket sends nothing.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("224.0.0.251", 5353))
            return str(probe.getsockname()[0])
    except OSError:
        return named
