"""The node: builds a peer's parts, starts and stops them, and wires their callbacks.

It holds no rules of its own. The parts never import it; each gets the callables it needs
(`emit`, `spawn`, lookups) in its constructor:

- `advert.LocalLibrary`: the games root as scanned and as advertised, with its deltas;
- `links.Links`: QUIC links, Hello, liveness, Goodbye, remote libraries;
- `operations.Operations`: the single-flight table and how every operation ends;
- `transfer.lane`: the fast lane's server (gated by `authorize_chunk`) and client;
- `console.COMMANDS`: the stdin commands, run by `run_command`.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import structlog

from peer import console
from peer.advert import LocalLibrary
from peer.commands import Command
from peer.dirlock import DirLock, check_apart, made
from peer.discovery import Discovery, advertised_host, should_dial
from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.identity import Identity, load_or_create_identity
from peer.links import Links
from peer.operations import Operations
from peer.output import Emit
from peer.protocol import (
    PROTOCOL_VERSION,
    GetGame,
    GetStream,
    LibraryDelta,
    Reply,
)
from peer.settings import Settings
from peer.transfer.lane import TcpLane
from peer.transfer.serve import Serving
from peer.transfer.upload import Authorize, LaneServer, OpenStream, RateLimiter, serve_lane
from peer.unpack import make_unpacker

log = structlog.get_logger("peer")


class Node:
    def __init__(self, settings: Settings, emit: Emit) -> None:
        self.settings = settings
        self.emit = emit
        self.identity: Identity | None = None
        self.addr = ""
        self.data_port = 0
        self.data_token = secrets.token_hex(16)
        self.stopping = asyncio.Event()  # set once shutdown has finished
        self._shutting_down = False
        self._locks: list[DirLock] = []  # the state dir's, then the games dir's
        self._tasks: set[asyncio.Task[Any]] = set()
        self.operations = Operations(emit, changed=self._operations_changed, spawn=self.spawn)
        self.library = LocalLibrary(
            settings.games_dir,
            settings.catalog,
            emit,
            hidden=self.operations.active,
            publish=self._publish,
        )
        self.links = Links(
            emit=emit,
            spawn=self.spawn,
            introduce=self._introduce,
            data_token=self.data_token,
            serve=lambda request: self.serving.answer(request),
            ping_interval=settings.ping_interval,
            stale_timeout=settings.stale_timeout,
            connect_timeout=settings.connect_timeout,
        )
        self.lane = TcpLane(settings.chunk_idle_timeout)
        self.unpacker = make_unpacker(settings.unrar)
        self.serving = Serving(
            lambda: self.library.games_dir,
            settings.catalog,
            self.operations.active,
            self.data_token,
            settings.unrar,
            settings.max_upload_rate,
        )
        self._lane_server: LaneServer | None = None
        self._discovery: Discovery | None = None

    @property
    def peer_id(self) -> str:
        assert self.identity is not None, "the node has not started"
        return self.identity.peer_id

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` as one of the node's tasks: logged if it crashes, cancelled at stop."""

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task crashed", task=name)
                return None

        if self.stopping.is_set():  # shut down: a task now would outlive the loop, unawaited
            if inspect.iscoroutine(coro):
                coro.close()
            gone: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            gone.cancel()
            return cast("asyncio.Task[Any]", gone)
        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if inspect.iscoroutine(coro):
            # A task cancelled before it ever ran (at shutdown) never started `coro`: close it,
            # or Python warns "coroutine ... was never awaited" on stderr.
            task.add_done_callback(lambda _task: coro.close())
        return task

    # -- start and stop ----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        check_apart(made(s.state_dir), made(self.library.games_dir))
        self._locks = [DirLock(s.state_dir)]
        self.identity = load_or_create_identity(s.state_dir)
        self.library.peer_id = self.links.peer_id = self.peer_id
        self._locks.append(DirLock(self.library.games_dir))
        await self.library.recover(s.fixtures)
        self.links.endpoint = ControlEndpoint(
            self.identity,
            self.links.handle,
            self.links.closed,
            request_timeout=s.request_timeout,
            idle_timeout=max(s.stale_timeout * 2, 10.0),
        )
        try:
            port = await self.links.endpoint.listen(s.listen_host, s.listen_port)
        except OSError as exc:  # in use, or a host name that does not resolve here
            where = f"{s.listen_host}:{s.listen_port}"
            raise PeerError("bad-address", f"cannot listen on {where}: {exc}") from None
        try:  # the lane takes the same port number when it is free, for tidy addresses
            lane = await serve_lane(s.listen_host, port, *self._lane_gates(), self.serving.tally)
        except OSError:
            lane = await serve_lane(s.listen_host, 0, *self._lane_gates(), self.serving.tally)
        self._lane_server = lane
        self.data_port = lane.port
        self.addr = self.links.addr = f"{advertised_host(s.listen_host)}:{port}"
        self.library.rescan(force_event=True)
        self.emit(
            "local-peer-ready",
            peer_id=self.peer_id,
            addr=self.addr,
            data_port=self.data_port,
            games_dir=str(self.library.games_dir),
        )
        log.info("ready", peer_id=self.peer_id, addr=self.addr, data_port=self.data_port)
        self.spawn(self._rescan_forever(), "scan")
        self.spawn(self.links.keep_alive(), "liveness")
        if s.mdns:
            await self._start_discovery(port)

    def use_games_dir(self, games_dir: Path) -> None:
        """`set-game-dir`: take the new directory's lock, then let the old one go."""
        check_apart(self.settings.state_dir, made(games_dir))
        lock = DirLock(games_dir)
        self._locks.pop().release()
        self._locks.append(lock)
        self.library.games_dir = games_dir

    async def _start_discovery(self, port: int) -> None:
        host = self.addr.rpartition(":")[0]

        def found(peer_id: str, addr: str) -> None:
            self.links.discovered(peer_id, addr, dial=should_dial(self.peer_id, peer_id))

        self._discovery = Discovery(self.peer_id, host, port, found)
        try:
            await self._discovery.start()
        except OSError as exc:  # no multicast here: say so and keep serving
            self._discovery = None
            log.warning("mdns unavailable", error=str(exc))

    def stop_soon(self) -> None:
        self.spawn(self.shutdown(), "shutdown")

    async def shutdown(self) -> None:
        """End the operations, say Goodbye to every peer (S10), then close everything."""
        if self._shutting_down:  # a second caller waits for the first to finish
            await self.stopping.wait()
            return
        self._shutting_down = True
        if self._discovery is not None:
            await self._discovery.close()
        await self.operations.shutdown()
        await self.links.close()
        if self._lane_server is not None:
            await self._lane_server.close()
        current = asyncio.current_task()
        # Cancel and wait until none is left: a task ending can spawn another (a link closing
        # drops its peer, which notifies), and one left pending is destroyed with the loop.
        while pending := [t for t in self._tasks if t is not current and not t.done()]:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for lock in self._locks:
            lock.release()
        self.stopping.set()

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scan_interval)
            self.library.rescan()

    # -- wiring ------------------------------------------------------------------------------

    async def run_command(self, cmd: Command) -> Any:
        return await console.COMMANDS[cmd.name].handler(self, **cmd.args)

    async def request_peer(self, peer_id: str, message: GetGame | GetStream) -> Reply:
        return await self.links.request(peer_id, message, self.settings.describe_timeout)

    def _operations_changed(self) -> None:
        self.library.rescan()

    def _publish(self, delta: LibraryDelta) -> None:
        self.links.broadcast(delta)

    def _introduce(self) -> dict[str, Any]:
        rev, games = self.library.snapshot()
        return dict(
            proto=PROTOCOL_VERSION,
            peer_id=self.peer_id,
            listen_addr=self.addr,
            data_port=self.data_port,
            data_token=self.data_token,
            rev=rev,
            games=games,
        )

    def _lane_gates(self) -> tuple[Authorize, OpenStream, RateLimiter]:
        return self.serving.authorize, self.serving.open_stream, self.serving.limiter
