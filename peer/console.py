"""The stdin commands: each declared once, its fields next to the handler that runs it.

`COMMANDS` is the whole command surface: `commands.parse_command` validates a line against it,
and the node calls the handler with the validated fields. Handlers see the node only through
`Parts`, so this module never imports the node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from peer import jobs
from peer.advert import LocalLibrary
from peer.aggregate import game_rows, sources_for
from peer.blocking import in_thread
from peer.catalog import require_catalog_game
from peer.commands import Field, optional
from peer.errors import PeerError
from peer.install import discard_partial
from peer.launch import MARKER, apply_launch_settings
from peer.links import Links
from peer.operations import (
    DOWNLOADING,
    INSTALLING,
    STREAM_INSTALLING,
    UNINSTALLING,
    Job,
    Operations,
)
from peer.paths import LOCAL_DIR
from peer.settings import Settings
from peer.transfer.fetch import FetchSettings
from peer.transfer.sources import Source, TransferContext
from peer.unpack import Unpacker


class Parts(TransferContext, Protocol):
    """What command handlers may use of the node."""

    settings: Settings
    library: LocalLibrary
    links: Links
    operations: Operations
    unpacker: Unpacker

    @property
    def peer_id(self) -> str: ...

    @property
    def addr(self) -> str: ...

    def stop_soon(self) -> None: ...

    def use_games_dir(self, games_dir: Path) -> None: ...


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class CommandSpec:
    fields: Mapping[str, Field]
    handler: Handler


COMMANDS: dict[str, CommandSpec] = {}


def command(name: str, **fields: Field) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = CommandSpec(fields, handler)
        return handler

    return register


def require(
    node: Parts,
    game_id: str,
    *,
    downloaded: bool = False,
    installed: bool = False,
    idle: bool = False,
) -> str:
    """The checks every game command starts with; returns the catalog version."""
    version = require_catalog_game(node.settings.catalog, game_id)
    state = node.library.get(game_id)
    if downloaded and not (state and state.downloaded):
        raise PeerError("not-downloaded", f"game {game_id} is not downloaded")
    if installed and not (state and state.installed):
        raise PeerError("not-installed", f"game {game_id} is not installed")
    if idle and game_id in node.operations.table:
        raise PeerError(
            "operation-in-progress", f"operation already in progress for game {game_id}"
        )
    return version


def _marker_dir(node: Parts, game_id: str) -> Path:
    return node.settings.state_dir / "games" / game_id


def _install_job(node: Parts, game_id: str) -> Job:
    root = node.library.games_dir / game_id
    return jobs.install(node.emit, root, node.unpacker, _marker_dir(node, game_id))


def _sources(node: Parts, game_id: str) -> list[Source]:
    """Catalog-version ready peers in address order, or the `no-peers` refusal."""
    peers = sources_for(game_id, node.settings.catalog, node.links.table.peers.values())
    if not peers:
        node.emit("no-peers-have-game", game_id=game_id)
        raise PeerError("no-peers", f"no peers have game {game_id}")
    return [Source(p.peer_id, p.addr, p.host, p.data_port, p.data_token) for p in peers]


@command("status")
async def status(node: Parts) -> Any:
    return {
        "peer_id": node.peer_id,
        "addr": node.addr,
        "games_dir": str(node.library.games_dir),
        "peer_count": len(node.links.table.peers),
        "local_games": node.library.user_rows(),
        "active_operations": node.operations.listing(),
    }


@command("list-peers")
async def list_peers(node: Parts) -> Any:
    peers = sorted(node.links.table.peers.values(), key=lambda p: p.addr)
    return [p.to_json() for p in peers]


@command("list-games")
async def list_games(node: Parts) -> Any:
    peers = list(node.links.table.peers.values())
    return game_rows(node.settings.catalog, node.library.games, peers)


@command("connect", addr=Field(str))
async def connect(node: Parts, addr: str) -> Any:
    record = await node.links.connect(addr)
    return {"peer_id": record.peer_id, "addr": record.addr}


@command("wait-peers", count=optional(int, 1), timeout_s=optional(float, 30.0))
async def wait_peers(node: Parts, count: int, timeout_s: float) -> Any:
    return {"peer_count": await node.links.wait_for(count, timeout_s)}


@command("set-game-dir", path=Field(str))
async def set_game_dir(node: Parts, path: str) -> Any:
    if node.operations.table:
        raise PeerError("operation-in-progress", "cannot switch games dir during operations")
    games_dir = Path(path)
    node.use_games_dir(games_dir)
    node.library.rescan(force_event=True)
    return {"games_dir": str(games_dir)}


@command("download", game_id=Field(str), install=optional(bool, True))
async def download(node: Parts, game_id: str, install: bool) -> Any:
    version = require(node, game_id, idle=True)
    sources = _sources(node, game_id)
    s = node.settings
    job = jobs.download(
        node,
        FetchSettings(s.chunk_size, s.fetch_depth, s.progress_interval),
        node.library.games_dir,
        game_id,
        version,
        sources,
        _install_job(node, game_id) if install else None,
    )
    root = node.library.games_dir / game_id
    node.operations.start(game_id, DOWNLOADING, job, undo=lambda: discard_partial(root))
    return {"game_id": game_id, "sources": [p.addr for p in sources]}


@command("stream-install", game_id=Field(str))
async def stream_install(node: Parts, game_id: str) -> Any:
    """Install straight from a source's archives, keeping neither archive nor sentinel."""
    version = require(node, game_id, idle=True)
    sources = _sources(node, game_id)
    job = jobs.stream_install(node, node.library.games_dir, game_id, version, sources)
    node.operations.start(game_id, STREAM_INSTALLING, job)
    return {"game_id": game_id, "sources": [s.addr for s in sources]}


@command("cancel-download", game_id=Field(str))
async def cancel_download(node: Parts, game_id: str) -> Any:
    """Stop a download in its transfer phase; answers once its partial files are gone."""
    require(node, game_id)
    await node.operations.cancel(game_id)
    return {"game_id": game_id, "cancelled": True}


@command("install", game_id=Field(str))
async def install(node: Parts, game_id: str) -> Any:
    require(node, game_id, downloaded=True, idle=True)
    node.operations.start(game_id, INSTALLING, _install_job(node, game_id))
    return {"game_id": game_id}


@command("uninstall", game_id=Field(str))
async def uninstall(node: Parts, game_id: str) -> Any:
    require(node, game_id, installed=True, idle=True)
    node.operations.start(game_id, UNINSTALLING, jobs.uninstall(node.library.games_dir / game_id))
    return {"game_id": game_id}


@command("play", game_id=Field(str), username=Field(str), language=Field(str))
async def play(node: Parts, game_id: str, username: str, language: str) -> Any:
    """Stamp launch settings on first play; the result says what was written."""
    require(node, game_id, installed=True, idle=True)
    local = node.library.games_dir / game_id / LOCAL_DIR
    marker = _marker_dir(node, game_id) / MARKER
    return await in_thread(apply_launch_settings, local, marker, username, language)


@command("shutdown")
async def shutdown(node: Parts) -> Any:
    node.stop_soon()
    return {"peer_id": node.peer_id}


# What `commands.parse_command` validates a line against.
SPECS: Mapping[str, Mapping[str, Field]] = {n: spec.fields for n, spec in COMMANDS.items()}
