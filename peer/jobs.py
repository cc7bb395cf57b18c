"""The bodies of operations: download (then install), streamed install, install, uninstall.

Each returns a `Job` for `Operations.start`; how an operation ends, whatever its job does, is
decided by `Operations.run`, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peer.blocking import in_thread
from peer.errors import PeerError
from peer.install import install_game, uninstall_game
from peer.launch import MARKER
from peer.operations import INSTALLING, Job, Operation
from peer.output import Emit
from peer.paths import LOCAL_DIR
from peer.transfer.fetch import FetchSettings, download_game
from peer.transfer.sources import Source, TransferContext
from peer.transfer.stream import discard_staging, promote, stream_game
from peer.unpack import Unpacker


def download(
    ctx: TransferContext,
    settings: FetchSettings,
    games_dir: Path,
    game_id: str,
    version: str,
    sources: list[Source],
    then_install: Job | None,
) -> Job:
    async def job(op: Operation) -> Mapping[str, Any]:
        figures = await download_game(ctx, settings, games_dir, game_id, version, sources)
        if then_install is None:
            return figures
        op.advance(INSTALLING, **figures)
        return await then_install(op)

    return job


def stream_install(
    ctx: TransferContext, games_dir: Path, game_id: str, version: str, sources: list[Source]
) -> Job:
    """Stream, then promote; any end but success rolls the root back to what it was."""
    root = games_dir / game_id

    async def job(op: Operation) -> Mapping[str, Any]:
        if (root / LOCAL_DIR).is_dir():
            raise PeerError("already-installed", f"game {game_id} is already installed")
        try:
            figures = await stream_game(ctx, games_dir, game_id, version, sources)
            op.advance(INSTALLING, **figures)
            ctx.emit("install-begin", game_id=game_id)
            await in_thread(promote, root)
        except BaseException:
            await in_thread(discard_staging, root)
            raise
        return {}

    return job


def install(emit: Emit, root: Path, unpacker: Unpacker, marker_dir: Path) -> Job:
    def work() -> None:
        try:
            install_game(root, unpacker)
            # A fresh local/ has never been played: the next `play` stamps launch settings.
            (marker_dir / MARKER).unlink(missing_ok=True)
        except OSError as exc:
            raise PeerError("install-failed", f"install of {root.name} failed: {exc}") from exc

    async def job(op: Operation) -> Mapping[str, Any]:
        emit("install-begin", game_id=op.game_id)
        await in_thread(work)
        return {}

    return job


def uninstall(root: Path) -> Job:
    def work() -> None:
        try:
            uninstall_game(root)
        except OSError as exc:
            raise PeerError("uninstall-failed", f"uninstall of {root.name} failed: {exc}") from exc

    async def job(op: Operation) -> Mapping[str, Any]:
        await in_thread(work)
        return {}

    return job
