"""Links to other peers: dialling, Hello, liveness, Goodbye and their library deltas.

One QUIC connection per remote peer id. This module owns the peer table and keeps it true:
a Hello (either direction) records a peer, a delta updates its library, a Goodbye or a closed
connection removes it at once, and the liveness rule (`mesh.liveness`) pings the idle and drops
the silent. Requests it does not own (GetGame) go to the `serve` callback it was given. A peer
lost without a Goodbye is dialled again with backoff (`mesh.redial_delay`) until it is back.

An introduction counts only from the holder of its id's key (proven in the QUIC handshake), and
`mesh.meeting` says who it is from: a new peer, a restart, ourselves, or a second live process
with a known id, which is refused and reported, never merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.mesh import (
    REDIAL_REASONS,
    Changes,
    PeerTable,
    RemotePeer,
    keeps_new_link,
    liveness,
    meeting,
    redial_delay,
)
from peer.output import Emit
from peer.protocol import (
    DuplicateIdentity,
    Goodbye,
    Hello,
    HelloAck,
    LibraryDelta,
    Ok,
    Ping,
    Pong,
    Reply,
    Request,
    expect,
)
from peer.quic import ControlConnection, split_addr

log = structlog.get_logger("links")

Spawn = Callable[[Awaitable[Any], str], "asyncio.Task[Any]"]
Serve = Callable[[Request], Awaitable[Reply]]
Introduce = Callable[[], dict[str, Any]]  # the fields of our Hello and HelloAck

SELF_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0"})


class Links:
    def __init__(
        self,
        *,
        emit: Emit,
        spawn: Spawn,
        introduce: Introduce,
        data_token: str,
        serve: Serve,
        ping_interval: float,
        stale_timeout: float,
        connect_timeout: float,
    ) -> None:
        self._emit = emit
        self._spawn = spawn
        self._introduce = introduce
        self._data_token = data_token  # ours: tells another process with our key from us
        self._serve = serve
        self._ping_interval = ping_interval
        self._stale_timeout = stale_timeout
        self._connect_timeout = connect_timeout
        self.table = PeerTable()
        self.conns: dict[str, ControlConnection] = {}
        self.changed = asyncio.Condition()
        self.peer_id = ""
        self.addr = ""
        self.endpoint: ControlEndpoint | None = None
        self._redialling: set[str] = set()  # peer ids with a redial task
        self._closing = False

    # -- dialling --------------------------------------------------------------------------

    async def connect(self, addr: str) -> RemotePeer:
        """Dial `addr`, exchange Hello/HelloAck and record the peer."""
        host, port = split_addr(addr)
        own_host, _, own_port = self.addr.rpartition(":")
        if port == int(own_port) and host in {own_host, *SELF_HOSTS}:
            raise PeerError("self-connect", f"cannot connect peer to itself ({self.addr})")
        assert self.endpoint is not None
        conn = await self.endpoint.connect(host, port, self._connect_timeout)
        try:
            reply = await conn.request(Hello(**self._introduce()))
            if isinstance(reply, DuplicateIdentity):
                if self._concerns(reply, conn.proven_peer_id or ""):
                    self._told_duplicate(reply, conn.proven_peer_id or "")
                raise PeerError("duplicate-identity", f"{addr} refused us: {_clash(reply)}")
            met = await self._meet(conn, expect(reply, HelloAck))
            if isinstance(met, DuplicateIdentity):
                with contextlib.suppress(PeerError):
                    await conn.request(met, timeout=2.0)
                raise PeerError("duplicate-identity", f"refused {addr}: {_clash(met)}")
        except PeerError:
            conn.close()
            raise
        if self.conns.get(met.peer_id) is not conn:
            conn.close()  # the peer was linked already, by the link both ends keep
        return met

    def discovered(self, peer_id: str, addr: str, dial: bool) -> None:
        """mDNS heard a peer: report it and, if the tie-break says so, dial it."""
        known = self.table.peers.get(peer_id)
        if known is not None and known.addr == addr:
            return
        self._emit("peer-discovered", peer_id=peer_id, addr=addr)
        if dial:
            self._spawn(self._dial_quietly(addr), f"dial-{addr}")

    async def _dial_quietly(self, addr: str) -> None:
        try:
            await self.connect(addr)
        except PeerError as exc:
            log.warning("dialling a discovered peer failed", addr=addr, error=exc.message)

    async def _meet(
        self, conn: ControlConnection, intro: Hello | HelloAck
    ) -> RemotePeer | DuplicateIdentity:
        """Record a proven introduction, or refuse it; a duplicate is returned to be told."""
        proven = conn.proven_peer_id
        if proven != intro.peer_id:
            why = f"it claims peer id {intro.peer_id} but holds the key of {proven or 'none'}"
            self._emit(
                "peer-refused",
                peer_id=intro.peer_id,
                addr=intro.listen_addr,
                code="identity-mismatch",
                reason=why,
            )
            raise PeerError("identity-mismatch", f"refused {intro.listen_addr}: {why}")
        known = self.table.peers.get(intro.peer_id)
        if self.conns.get(intro.peer_id) is conn:  # a second Hello on one link: an update
            return await self._register(conn, intro)
        met = meeting(intro, self.peer_id, self._data_token, known)
        if met == "self":  # another address of this very peer (a host name, an interface)
            raise PeerError("self-connect", f"cannot connect peer to itself ({self.addr})")
        if met == "clone-of-self":
            return self._saw_duplicate(intro.peer_id, (self.addr, intro.listen_addr))
        if met == "restart-or-clone" and known is not None and await self._answers(known.peer_id):
            clash = self._saw_duplicate(intro.peer_id, (known.addr, intro.listen_addr))
            self._spawn(self._send_quietly(known.peer_id, clash), f"tell-{known.peer_id}")
            return clash
        old = self.conns.get(intro.peer_id)
        if (
            met == "same-process"
            and known is not None
            and old is not None
            and not keeps_new_link(self.peer_id, intro.peer_id, old.dialled, conn.dialled)
            and await self._answers(known.peer_id)
        ):
            # A second link to a live process (both ends dialled at once): both keep the other
            # one. A silent old link is replaced instead, as the other end has dropped it. The
            # library it brings is still the newest: a delta may have died with a closed link.
            self._refreshed(intro)
            return known
        return await self._register(conn, intro)

    def _saw_duplicate(self, peer_id: str, addrs: tuple[str, str]) -> DuplicateIdentity:
        clash = DuplicateIdentity(peer_id, addrs)
        self._told_duplicate(clash, self.peer_id)
        return clash

    def _concerns(self, clash: DuplicateIdentity, reporter: str) -> bool:
        """Whether a duplicate-identity report is one we may act on: hearsay about a third
        peer is not taken at face value (any introduced peer could smear any other), so only a
        report about us or about the reporter itself counts; it is logged and dropped otherwise.
        """
        if clash.peer_id in {self.peer_id, reporter}:
            return True
        log.warning("ignoring hearsay", reporter=reporter, about=clash.peer_id)
        return False

    def _told_duplicate(self, clash: DuplicateIdentity, reported_by: str) -> None:
        self._emit(
            "duplicate-identity",
            peer_id=clash.peer_id,
            addrs=list(clash.addrs),
            reported_by=reported_by,
        )

    async def _resync(self, conn: ControlConnection, peer_id: str) -> None:
        """A delta did not follow the library revision we hold: ask the whole library again by
        a second Hello on the same link (its HelloAck carries it)."""
        try:
            ack = expect(await conn.request(Hello(**self._introduce())), HelloAck)
        except PeerError as exc:  # the link is going; its redial brings the library anyway
            log.info("library resync failed", peer_id=peer_id, error=exc.message)
            return
        if ack.peer_id == peer_id and self.conns.get(peer_id) is conn:
            self._refreshed(ack)

    def _refreshed(self, intro: Hello | HelloAck) -> None:
        changes = self.table.refresh(intro)
        if changes is not None:
            self._library_changed(self.table.peers[intro.peer_id], changes)

    def _library_changed(self, record: RemotePeer, changes: Changes) -> None:
        where = {"peer_id": record.peer_id, "addr": record.addr, "games": sorted(record.library)}
        self._emit("peer-library-changed", **where, **dataclasses.asdict(changes))

    async def _register(self, conn: ControlConnection, intro: Hello | HelloAck) -> RemotePeer:
        old_conn = self.conns.get(intro.peer_id)
        record, is_new = self.table.upsert(intro, time.monotonic())
        conn.peer_id = intro.peer_id
        self.conns[intro.peer_id] = conn
        if old_conn is not None and old_conn is not conn:
            old_conn.close()
        self._emit(
            "peer-connected",
            peer_id=record.peer_id,
            addr=record.addr,
            game_count=len(record.library),
            new=is_new,
        )
        await self._notify()
        return record

    # -- answering -------------------------------------------------------------------------

    async def handle(self, conn: ControlConnection, request: Request) -> Reply:
        """Answer one request from a remote peer (the QUIC layer turns refusals into replies)."""
        if isinstance(request, Hello):
            met = await self._meet(conn, request)
            return met if isinstance(met, DuplicateIdentity) else HelloAck(**self._introduce())
        record = self.table.peers.get(conn.peer_id or "")
        if record is None:
            raise PeerError("not-introduced", "send hello first")
        record.last_seen = time.monotonic()
        if isinstance(request, Ping):
            return Pong()
        if isinstance(request, Goodbye):
            # Reply first, then drop: the leaving peer should hear that we heard it.
            asyncio.get_running_loop().call_soon(self.drop, record.peer_id, "goodbye")
            return Ok()
        if isinstance(request, DuplicateIdentity):
            if not self._concerns(request, record.peer_id):
                raise PeerError("unauthorised", "a duplicate-identity report about a third peer")
            self._told_duplicate(request, record.peer_id)
            return Ok()
        if isinstance(request, LibraryDelta):
            sync = self.table.apply_delta(record.peer_id, request)
            if sync == "applied":
                self._library_changed(record, Changes.of_delta(request))
            elif sync == "behind":
                self._spawn(self._resync(conn, record.peer_id), f"resync-{record.peer_id}")
            return Ok()
        return await self._serve(request)

    def closed(self, conn: ControlConnection) -> None:
        if conn.peer_id and self.conns.get(conn.peer_id) is conn:
            self.drop(conn.peer_id, "connection-closed")

    # -- asking ----------------------------------------------------------------------------

    async def request(self, peer_id: str, message: Request, timeout: float | None = None) -> Reply:
        conn = self.conns.get(peer_id)
        if conn is None:
            raise PeerError("peer-unreachable", f"peer {peer_id} is gone")
        try:
            return await conn.request(message, timeout)
        except PeerError:
            newer = self.conns.get(peer_id)
            if not conn.closed or newer is None or newer is conn:
                raise
            # The link was replaced under the request (the peer dialled us again, or both ends
            # did at once): the peer is still here; ask again on the link that is.
            return await newer.request(message, timeout)

    def broadcast(self, message: Request) -> None:
        """Send `message` to every linked peer, without waiting; failures are only logged."""
        for peer_id in list(self.conns):
            self._spawn(self._send_quietly(peer_id, message), f"send-{peer_id}")

    async def _send_quietly(self, peer_id: str, message: Request) -> None:
        try:
            await self.request(peer_id, message)
        except PeerError as exc:
            log.warning("send failed", peer_id=peer_id, type=type(message).__name__, error=exc)

    async def wait_for(self, count: int, timeout: float) -> int:
        try:
            async with self.changed, asyncio.timeout(timeout):
                await self.changed.wait_for(lambda: len(self.table.peers) >= count)
        except TimeoutError:
            have = len(self.table.peers)
            raise PeerError(
                "timeout", f"waited {timeout}s for {count} peer(s); have {have}"
            ) from None
        return len(self.table.peers)

    # -- losing ----------------------------------------------------------------------------

    def drop(self, peer_id: str, reason: str) -> None:
        record = self.table.remove(peer_id)
        conn = self.conns.pop(peer_id, None)
        if conn is not None and not conn.closed:
            conn.close()
        if record is None:
            return
        self._emit(
            "peer-lost",
            peer_id=peer_id,
            addr=record.addr,
            reason=reason,
            removed_games=sorted(record.library),
        )
        self._spawn(self._notify(), "notify")
        if reason in REDIAL_REASONS and not self._closing and peer_id not in self._redialling:
            self._redialling.add(peer_id)
            self._spawn(self._redial(peer_id, record.addr), f"redial-{peer_id}")

    async def _redial(self, peer_id: str, addr: str) -> None:
        """Dial a lost peer's last address with backoff until it is back, by our dial or its."""
        try:
            attempt = 0
            while peer_id not in self.table.peers:
                await asyncio.sleep(redial_delay(attempt))
                attempt += 1
                if peer_id in self.table.peers or self._closing:
                    return
                try:
                    await self.connect(addr)
                except PeerError as exc:
                    log.debug("redial failed", peer_id=peer_id, addr=addr, error=exc.message)
                    continue
                log.info("redialled", peer_id=peer_id, addr=addr, attempts=attempt)
        finally:
            self._redialling.discard(peer_id)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def keep_alive(self) -> None:
        """Apply the liveness rule twice per ping interval, for as long as the node runs."""
        while True:
            await asyncio.sleep(self._ping_interval / 2)
            due = liveness(
                time.monotonic(),
                self.table.peers.values(),
                self._ping_interval,
                self._stale_timeout,
            )
            for peer_id in due.drop:
                self.drop(peer_id, "timeout")
            for peer_id in due.ping:
                if peer_id in self.conns:
                    self._spawn(self._answers(peer_id), f"ping-{peer_id}")

    async def _answers(self, peer_id: str) -> bool:
        """Whether the peer answers a ping on its link now (refreshing its `last_seen`)."""
        conn = self.conns.get(peer_id)
        if conn is None or conn.closed:
            return False
        try:
            expect(await conn.request(Ping(self.peer_id), timeout=2.0), Pong)
        except PeerError:
            return False
        record = self.table.peers.get(peer_id)
        if record is not None:
            record.last_seen = time.monotonic()
        return True

    async def close(self) -> None:
        """Say Goodbye to every peer so they drop us at once (S10), then close every link."""
        self._closing = True
        goodbyes = [
            conn.request(Goodbye(self.peer_id), timeout=2.0) for conn in self.conns.values()
        ]
        await asyncio.gather(*goodbyes, return_exceptions=True)
        for conn in list(self.conns.values()):
            conn.close()
        if self.endpoint is not None:
            self.endpoint.close()


def _clash(clash: DuplicateIdentity) -> str:
    return f"peer id {clash.peer_id} is presented by live peers at {' and '.join(clash.addrs)}"
