"""The peer's event loop: it owns the state and wires the pure core to sockets and files.

State lives here and nowhere else: the local library (a rescan result), the remote peer table,
and the single-flight operation table. Every long job (download, install) runs as a task that
reports through events; terminal events are emitted only after the library is rescanned and the
operation is removed, so they are safe points for the next command.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from peer.aggregate import game_rows, sources_for
from peer.catalog import require_catalog_game
from peer.commands import Command
from peer.discovery import Discovery, should_dial
from peer.errors import PeerError
from peer.identity import Identity, load_or_create_identity
from peer.install import discard_partial, install_game, recover, uninstall_game
from peer.launch import MARKER, apply_launch_settings
from peer.library import scan_library
from peer.mesh import Hello, PeerTable, RemotePeer
from peer.output import Output
from peer.paths import LOCAL_DIR, SENTINEL, check_game_id
from peer.settings import Settings
from peer.transfer.fetch import FetchSettings, Source, download_game
from peer.transfer.serve import DescriptorCache, check_serve_gates
from peer.transport import (
    ControlConnection,
    ControlEndpoint,
    RateLimiter,
    serve_data,
    split_addr,
)
from peer.unpack import make_unpacker
from peer.wire import (
    PROTOCOL_VERSION,
    GameSummary,
    LibraryDelta,
    Message,
    library_delta,
    parse_library,
)

log = structlog.get_logger("peer")

DOWNLOADING, INSTALLING, UNINSTALLING = "Downloading", "Installing", "Uninstalling"


def _advertised_host(host: str) -> str:
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


class Peer:
    def __init__(self, settings: Settings, output: Output) -> None:
        self.settings = settings
        self.out = output
        self.games_dir = settings.games_dir
        self.catalog = settings.catalog
        self.identity: Identity | None = None
        self.addr = ""
        self.data_port = 0
        self.data_token = secrets.token_hex(16)
        self.local: dict[str, GameSummary] = {}
        self.advertised: dict[str, GameSummary] = {}
        self.library_rev = 0
        self.table = PeerTable()
        self.conns: dict[str, ControlConnection] = {}
        self.operations: dict[str, str] = {}
        self.unpacker = make_unpacker(settings.unrar)
        self.descriptors = DescriptorCache(settings.chunk_size)
        self.limiter = RateLimiter(settings.max_upload_rate)
        self.peers_changed = asyncio.Condition()
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._endpoint: ControlEndpoint | None = None
        self._data_server: asyncio.Server | None = None
        self._discovery: Discovery | None = None
        self._downloads: dict[str, asyncio.Task[Any]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        assert self.identity is not None
        return self.identity.peer_id

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task crashed", task=name)
                return None

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        s = self.settings
        self.identity = load_or_create_identity(s.state_dir)
        self.games_dir.mkdir(parents=True, exist_ok=True)
        for game_id in s.fixtures:
            self._seed_fixture(check_game_id(game_id))
        for entry in sorted(self.games_dir.iterdir()):
            if entry.is_dir():
                recover(entry)
        self._endpoint = ControlEndpoint(
            self.identity,
            self.handle_request,
            self.connection_closed,
            request_timeout=s.request_timeout,
            idle_timeout=max(s.stale_timeout * 2, 10.0),
        )
        port = await self._endpoint.listen(s.listen_host, s.listen_port)
        try:
            self._data_server = await serve_data(s.listen_host, port, self.data_gate, self.limiter)
        except OSError:
            self._data_server = await serve_data(s.listen_host, 0, self.data_gate, self.limiter)
        self.data_port = int(self._data_server.sockets[0].getsockname()[1])
        self.addr = f"{_advertised_host(s.listen_host)}:{port}"
        self.rescan(force_event=True)
        self.out.event(
            "local-peer-ready",
            peer_id=self.peer_id,
            addr=self.addr,
            data_port=self.data_port,
            games_dir=str(self.games_dir),
        )
        log.info("ready", peer_id=self.peer_id, addr=self.addr, data_port=self.data_port)
        self.spawn(self._scan_loop(), "scan")
        self.spawn(self._liveness_loop(), "liveness")
        if s.mdns:
            host = self.addr.rpartition(":")[0]
            self._discovery = Discovery(self.peer_id, host, port, self._discovered)
            try:
                await self._discovery.start()
            except OSError as exc:  # no multicast here: say so and keep serving
                self._discovery = None
                log.warning("mdns unavailable", error=str(exc))

    def _seed_fixture(self, game_id: str) -> None:
        """`--fixture ID`: a tiny archive and a sentinel at the catalog version (or today's)."""
        root = self.games_dir / game_id
        if (root / SENTINEL).exists():
            return
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{game_id}.eti").write_bytes(f"lanpeer fixture archive for {game_id}\n".encode())
        version = self.catalog.get(game_id, time.strftime("%Y%m%d"))
        (root / SENTINEL).write_text(version + "\n")

    async def shutdown(self) -> None:
        """Say goodbye to every peer so they drop us at once (S10), then close everything."""
        if self._discovery is not None:
            await self._discovery.close()
        goodbyes = [
            conn.request({"type": "goodbye", "peer_id": self.peer_id}, timeout=2.0)
            for conn in self.conns.values()
        ]
        await asyncio.gather(*goodbyes, return_exceptions=True)
        for conn in list(self.conns.values()):
            conn.close()
        if self._endpoint:
            self._endpoint.close()
        if self._data_server:
            self._data_server.close()
        for task in list(self._tasks):
            task.cancel()
        self.stopping.set()

    def local_games(self) -> list[dict[str, Any]]:
        """Local roots as the user sees them: with the version our catalog expects."""
        return [
            {**g.to_json(), "catalog_version": self.catalog.get(g.game_id)}
            for g in self.local.values()
        ]

    # -- local library -------------------------------------------------------------------------

    def rescan(self, force_event: bool = False) -> None:
        games = scan_library(self.games_dir)
        if games != self.local or force_event:
            self.local = games
            self.out.event("local-library-changed", games=self.local_games())
        self._publish_library()

    def _publish_library(self) -> None:
        """Push a delta to every peer when what we advertise changed.

        Games with an operation in progress are hidden: a peer must never be offered a root
        that is being rewritten.
        """
        snapshot = {g: s for g, s in self.local.items() if g not in self.operations}
        delta = library_delta(self.advertised, snapshot)
        if delta.empty:
            return
        from_rev = self.library_rev
        self.library_rev += 1
        self.advertised = snapshot
        message = {
            "type": "library-delta",
            "peer_id": self.peer_id,
            "from_rev": from_rev,
            "to_rev": self.library_rev,
            "added": [g.to_json() for g in delta.added],
            "updated": [g.to_json() for g in delta.updated],
            "removed": list(delta.removed),
        }
        for peer_id, conn in list(self.conns.items()):
            self.spawn(self._send_quietly(peer_id, conn, message), f"delta-{peer_id}")

    async def _send_quietly(self, peer_id: str, conn: ControlConnection, msg: Message) -> None:
        try:
            await conn.request(msg)
        except PeerError as exc:
            log.warning("send failed", peer_id=peer_id, type=msg["type"], error=exc.message)

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scan_interval)
            self.rescan()

    # -- operations ----------------------------------------------------------------------------

    def _require(
        self,
        game_id: str,
        *,
        downloaded: bool = False,
        installed: bool = False,
        idle: bool = False,
    ) -> str:
        """The checks every game command starts with; returns the catalog version."""
        version = require_catalog_game(self.catalog, game_id)
        state = self.local.get(game_id)
        if downloaded and not (state and state.downloaded):
            raise PeerError("not-downloaded", f"game {game_id} is not downloaded")
        if installed and not (state and state.installed):
            raise PeerError("not-installed", f"game {game_id} is not installed")
        if idle and game_id in self.operations:
            raise PeerError(
                "operation-in-progress", f"operation already in progress for game {game_id}"
            )
        return version

    def _begin(self, game_id: str, kind: str) -> None:
        self._require(game_id, idle=True)
        self.operations[game_id] = kind
        self._operations_changed()

    def _end(self, game_id: str) -> None:
        self.operations.pop(game_id, None)
        self.rescan()
        self._operations_changed()

    def _operations_changed(self) -> None:
        self._publish_library()
        self.out.event(
            "active-operations-changed",
            operations=[{"game_id": g, "kind": k} for g, k in sorted(self.operations.items())],
        )

    # -- mesh ----------------------------------------------------------------------------------

    def hello_message(self, kind: str) -> Message:
        return {
            "type": kind,
            "proto": PROTOCOL_VERSION,
            "peer_id": self.peer_id,
            "listen_addr": self.addr,
            "data_port": self.data_port,
            "data_token": self.data_token,
            "rev": self.library_rev,
            "games": [g.to_json() for g in self.advertised.values()],
        }

    async def _register(self, conn: ControlConnection, hello: Hello) -> RemotePeer:
        old_conn = self.conns.get(hello.peer_id)
        record, is_new = self.table.upsert(hello, time.monotonic())
        conn.peer_id = hello.peer_id
        self.conns[hello.peer_id] = conn
        if old_conn is not None and old_conn is not conn:
            old_conn.close()
        self.out.event(
            "peer-connected",
            peer_id=record.peer_id,
            addr=record.addr,
            game_count=len(record.library),
            new=is_new,
        )
        async with self.peers_changed:
            self.peers_changed.notify_all()
        return record

    def _drop_peer(self, peer_id: str, reason: str) -> None:
        record = self.table.remove(peer_id)
        conn = self.conns.pop(peer_id, None)
        if conn is not None and not conn.closed:
            conn.close()
        if record is None:
            return
        self.out.event(
            "peer-lost",
            peer_id=peer_id,
            addr=record.addr,
            reason=reason,
            removed_games=sorted(record.library),
        )
        self.spawn(self._notify_peers_changed(), "notify")

    async def _notify_peers_changed(self) -> None:
        async with self.peers_changed:
            self.peers_changed.notify_all()

    def _discovered(self, peer_id: str, addr: str) -> None:
        known = self.table.peers.get(peer_id)
        if known is not None and known.addr == addr:
            return
        self.out.event("peer-discovered", peer_id=peer_id, addr=addr)
        if should_dial(self.peer_id, peer_id):
            self.spawn(self._dial_quietly(addr), f"dial-{addr}")

    async def _dial_quietly(self, addr: str) -> None:
        try:
            await self.cmd_connect({"addr": addr})
        except PeerError as exc:
            log.warning("dialling a discovered peer failed", addr=addr, error=exc.message)

    def connection_closed(self, conn: ControlConnection) -> None:
        if conn.peer_id and self.conns.get(conn.peer_id) is conn:
            self._drop_peer(conn.peer_id, "connection-closed")

    async def _liveness_loop(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.ping_interval / 2)
            now = time.monotonic()
            for record in list(self.table.peers.values()):
                idle = now - record.last_seen
                if idle > s.stale_timeout:
                    self._drop_peer(record.peer_id, "timeout")
                elif idle >= s.ping_interval and record.peer_id in self.conns:
                    self.spawn(self._ping(record.peer_id), f"ping-{record.peer_id}")

    async def _ping(self, peer_id: str) -> None:
        conn = self.conns.get(peer_id)
        if conn is None:
            return
        try:
            await conn.request({"type": "ping", "peer_id": self.peer_id}, timeout=2.0)
        except PeerError:
            return
        record = self.table.peers.get(peer_id)
        if record is not None:
            record.last_seen = time.monotonic()

    async def handle_request(self, conn: ControlConnection, msg: Message) -> Message:
        """Answer one request from a remote peer."""
        kind = msg["type"]
        if kind in ("hello",):
            hello = Hello.from_json(msg)
            if hello.peer_id == self.peer_id:
                raise PeerError("self-connect", f"cannot connect peer to itself ({self.addr})")
            await self._register(conn, hello)
            return self.hello_message("hello-ack")
        record = self.table.peers.get(conn.peer_id or "")
        if record is None:
            raise PeerError("not-introduced", "send hello first")
        record.last_seen = time.monotonic()
        if kind == "ping":
            return {"type": "pong"}
        if kind == "goodbye":
            # Reply first, then drop: the leaving peer should hear that we heard it.
            asyncio.get_running_loop().call_soon(self._drop_peer, record.peer_id, "goodbye")
            return {"type": "ok"}
        if kind == "library-delta":
            delta = LibraryDelta(
                added=tuple(parse_library(msg.get("added", [])).values()),
                updated=tuple(parse_library(msg.get("updated", [])).values()),
                removed=tuple(check_game_id(g) for g in msg.get("removed", [])),
            )
            to_rev = msg.get("to_rev")
            if not isinstance(to_rev, int):
                raise PeerError("bad-message", "library-delta needs integer to_rev")
            self.table.apply_delta(record.peer_id, to_rev, delta)
            self.out.event(
                "peer-library-changed",
                peer_id=record.peer_id,
                addr=record.addr,
                games=sorted(record.library),
                added=[g.game_id for g in delta.added],
                updated=[g.game_id for g in delta.updated],
                removed=list(delta.removed),
            )
            return {"type": "ok"}
        if kind == "get-game":
            root = check_serve_gates(
                self.games_dir, self.catalog, frozenset(self.operations), msg.get("game_id")
            )
            loop = asyncio.get_running_loop()
            files = await loop.run_in_executor(None, self.descriptors.describe, root)
            return {
                "type": "game-files",
                "game_id": root.name,
                "files": [f.to_json() for f in files],
            }
        raise PeerError("unknown-request", f"unknown request type {kind!r}")

    def data_gate(self, request: Message) -> tuple[Path, int, int]:
        """Authorise one fast-lane chunk request (token + the same gates as GetGame)."""
        if not secrets.compare_digest(str(request.get("token", "")), self.data_token):
            raise PeerError("unauthorised", "bad data token")
        root = check_serve_gates(
            self.games_dir,
            self.catalog,
            frozenset(self.operations),
            request.get("game_id"),
            request.get("path"),
        )
        offset, length = request.get("offset"), request.get("length")
        path = root / str(request["path"])
        if not (isinstance(offset, int) and isinstance(length, int)):
            raise PeerError("bad-message", "offset and length must be integers")
        size = path.stat().st_size
        if offset < 0 or length < 0 or offset + length > size:
            raise PeerError("bad-message", f"range {offset}+{length} outside file of {size}")
        return path, offset, length

    # -- commands ------------------------------------------------------------------------------

    async def run_command(self, cmd: Command) -> Any:
        handler: Callable[[dict[str, Any]], Awaitable[Any]] = getattr(
            self, "cmd_" + cmd.name.replace("-", "_")
        )
        return await handler(cmd.args)

    async def cmd_status(self, args: dict[str, Any]) -> Any:
        return {
            "peer_id": self.peer_id,
            "addr": self.addr,
            "games_dir": str(self.games_dir),
            "peer_count": len(self.table.peers),
            "local_games": self.local_games(),
            "active_operations": [
                {"game_id": g, "kind": k} for g, k in sorted(self.operations.items())
            ],
        }

    async def cmd_list_peers(self, args: dict[str, Any]) -> Any:
        return [p.to_json() for p in sorted(self.table.peers.values(), key=lambda p: p.addr)]

    async def cmd_list_games(self, args: dict[str, Any]) -> Any:
        return game_rows(self.catalog, self.local, list(self.table.peers.values()))

    async def cmd_connect(self, args: dict[str, Any]) -> Any:
        host, port = split_addr(args["addr"])
        own_host, _, own_port = self.addr.rpartition(":")
        if port == int(own_port) and host in {own_host, "127.0.0.1", "localhost", "0.0.0.0"}:
            raise PeerError("self-connect", f"cannot connect peer to itself ({self.addr})")
        assert self._endpoint is not None
        conn = await self._endpoint.connect(host, port, self.settings.connect_timeout)
        try:
            reply = await conn.request(self.hello_message("hello"))
            if reply.get("type") == "error":
                raise PeerError(str(reply.get("code")), str(reply.get("message")))
            hello = Hello.from_json(reply)
            if hello.peer_id == self.peer_id:
                raise PeerError("self-connect", f"cannot connect peer to itself ({self.addr})")
        except PeerError:
            conn.close()
            raise
        record = await self._register(conn, hello)
        return {"peer_id": record.peer_id, "addr": record.addr}

    async def cmd_wait_peers(self, args: dict[str, Any]) -> Any:
        count, timeout = args["count"], args["timeout_s"]
        try:
            async with self.peers_changed:
                async with asyncio.timeout(timeout):
                    await self.peers_changed.wait_for(lambda: len(self.table.peers) >= count)
        except TimeoutError:
            raise PeerError(
                "timeout",
                f"waited {timeout}s for {count} peer(s); have {len(self.table.peers)}",
            ) from None
        return {"peer_count": len(self.table.peers)}

    async def cmd_set_game_dir(self, args: dict[str, Any]) -> Any:
        if self.operations:
            raise PeerError("operation-in-progress", "cannot switch games dir during operations")
        path = Path(args["path"])
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PeerError("bad-path", f"cannot use {path}: {exc}") from None
        self.games_dir = path
        self.rescan(force_event=True)
        return {"games_dir": str(path)}

    async def cmd_shutdown(self, args: dict[str, Any]) -> Any:
        self.spawn(self.shutdown(), "shutdown")
        return {"peer_id": self.peer_id}

    async def cmd_download(self, args: dict[str, Any]) -> Any:
        game_id = args["game_id"]
        version = self._require(game_id, idle=True)
        sources = sources_for(game_id, self.catalog, self.table.peers.values())
        if not sources:
            self.out.event("no-peers-have-game", game_id=game_id)
            raise PeerError("no-peers", f"no peers have game {game_id}")
        self._begin(game_id, DOWNLOADING)
        plan = [Source(p.peer_id, p.addr, p.host, p.data_port, p.data_token) for p in sources]
        task = self.spawn(self._download(game_id, version, plan, args["install"]), f"dl-{game_id}")
        self._downloads[game_id] = task
        task.add_done_callback(lambda _: self._downloads.pop(game_id, None))
        return {"game_id": game_id, "sources": [p.addr for p in sources]}

    async def cmd_cancel_download(self, args: dict[str, Any]) -> Any:
        """Stop a download in its transfer phase and remove its partial files.

        A cancel is the user's choice, not a failure: it ends with `download-cancelled`, never
        `download-failed`. Once the bytes are committed and an install runs, it is too late.
        """
        game_id = args["game_id"]
        self._require(game_id)
        task = self._downloads.get(game_id)
        if task is None or self.operations.get(game_id) != DOWNLOADING:
            raise PeerError("not-downloading", f"no download of {game_id} to cancel")
        task.cancel()
        await asyncio.wait({task})
        return {"game_id": game_id, "cancelled": True}

    async def request_peer(self, peer_id: str, message: Message) -> Message:
        conn = self.conns.get(peer_id)
        if conn is None:
            raise PeerError("peer-unreachable", f"peer {peer_id} is gone")
        return await conn.request(message)

    def emit(self, event: str, **fields: Any) -> None:
        self.out.event(event, **fields)

    async def _download(
        self, game_id: str, version: str, sources: list[Source], install: bool
    ) -> None:
        s = self.settings
        fetch = FetchSettings(s.fetch_depth, s.chunk_idle_timeout, s.progress_interval)
        try:
            figures = await download_game(self, fetch, self.games_dir, game_id, version, sources)
        except asyncio.CancelledError:
            await asyncio.get_running_loop().run_in_executor(
                None, discard_partial, self.games_dir / game_id
            )
            self._end(game_id)
            self.out.event("download-cancelled", game_id=game_id)
            return
        except PeerError as exc:
            self._end(game_id)
            self.out.event("download-failed", game_id=game_id, code=exc.code, reason=exc.message)
            return
        except Exception as exc:
            log.exception("download crashed", game_id=game_id)
            self._end(game_id)
            self.out.event("download-failed", game_id=game_id, code="internal", reason=repr(exc))
            return
        if not install:
            self._end(game_id)
            self.out.event("download-finished", game_id=game_id, **figures)
            return
        self.operations[game_id] = INSTALLING
        self.rescan()
        self._operations_changed()
        self.out.event("download-finished", game_id=game_id, **figures)
        await self._install(game_id)

    async def cmd_install(self, args: dict[str, Any]) -> Any:
        game_id = args["game_id"]
        self._require(game_id, downloaded=True)
        self._begin(game_id, INSTALLING)
        self.spawn(self._install(game_id), f"install-{game_id}")
        return {"game_id": game_id}

    async def _install(self, game_id: str) -> None:
        self.out.event("install-begin", game_id=game_id)
        await self._finish_in_thread(game_id, "install", self._install_sync, game_id)

    def _install_sync(self, game_id: str) -> None:
        install_game(self.games_dir / game_id, self.unpacker)
        # A fresh local/ has never been played: the next `play` stamps launch settings again.
        marker = self.settings.state_dir / "games" / game_id / MARKER
        marker.unlink(missing_ok=True)

    async def _finish_in_thread(
        self, game_id: str, what: str, work: Callable[..., None], *args: Any
    ) -> None:
        """Run a blocking filesystem job, end the operation, then report `<what>-finished`
        or `<what>-failed`, in that order, so the event is a safe point for the next command."""
        try:
            await asyncio.get_running_loop().run_in_executor(None, work, *args)
        except PeerError as exc:
            self._end(game_id)
            self.out.event(f"{what}-failed", game_id=game_id, code=exc.code, reason=exc.message)
            return
        self._end(game_id)
        self.out.event(f"{what}-finished", game_id=game_id)

    async def cmd_play(self, args: dict[str, Any]) -> Any:
        """Stamp launch settings on first play; the result says what was written."""
        game_id = args["game_id"]
        self._require(game_id, installed=True, idle=True)
        marker = self.settings.state_dir / "games" / game_id / MARKER
        return await asyncio.get_running_loop().run_in_executor(
            None,
            apply_launch_settings,
            self.games_dir / game_id / LOCAL_DIR,
            marker,
            args["username"],
            args["language"],
        )

    async def cmd_uninstall(self, args: dict[str, Any]) -> Any:
        game_id = args["game_id"]
        self._require(game_id, installed=True)
        self._begin(game_id, UNINSTALLING)
        self.spawn(self._uninstall(game_id), f"uninstall-{game_id}")
        return {"game_id": game_id}

    async def _uninstall(self, game_id: str) -> None:
        await self._finish_in_thread(game_id, "uninstall", uninstall_game, self.games_dir / game_id)
