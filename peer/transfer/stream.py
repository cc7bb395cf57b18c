"""The receiving side of a streamed install: a game's archives, extracted, straight into staging.

The archive listings (names, sizes, CRC32 and digest of every entry, in order) are asked of
every catalog-version source and validated by plurality, as download descriptors are; a source
whose listing disagrees is not used. Then one source streams every entry; each is written under
`.local.installing/` with the path rules of downloads and checked against the validated size
and digest, all before `promote`. The listing's CRC32s are the archive's own, which the source
checks its extraction against; the receiver does not repeat them: the voted digest covers the
same bytes, and a liar can forge a CRC32, not the digest. A failed
attempt is rolled back and the whole stream is tried again from the next validated source
(there is no byte-offset resume). Nothing of the archive or the root sentinel is ever written:
the result is an install without a download (`LocalOnly`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peer import digest
from peer.blocking import in_thread
from peer.errors import PeerError
from peer.files import fsync_dir, sync_tree, write_all
from peer.paths import LOCAL_DIR, STAGING_DIR
from peer.protocol import (
    ArchiveEntry,
    ArchiveListing,
    EntryHeader,
    GetStream,
    Reply,
    StreamManifest,
    StreamRequest,
    expect,
)
from peer.transfer.plan import validate_descriptors
from peer.transfer.sources import (
    LocalWriteError,
    Source,
    TransferContext,
    collect_offers,
    figures,
    refusal,
    source_event,
)


def _listings_of(game_id: str) -> Callable[[Reply], tuple[ArchiveListing, ...]]:
    def read(reply: Reply) -> tuple[ArchiveListing, ...]:
        manifest = expect(reply, StreamManifest)
        if manifest.game_id != game_id:
            raise PeerError("bad-message", f"asked for {game_id}, got {manifest.game_id}")
        return manifest.archives

    return read


def prepare_staging(root: Path, entries: list[ArchiveEntry]) -> None:
    """A fresh, empty staging tree with every directory the entries need."""
    if root.is_symlink():
        raise PeerError("bad-path", f"{root.name} is a symlink; refusing to write through it")
    staging = root / STAGING_DIR
    discard_staging(root, keep_root=True)
    staging.mkdir(parents=True)
    for entry in entries:
        folder = staging / entry.path if entry.is_dir else (staging / entry.path).parent
        folder.mkdir(parents=True, exist_ok=True)


def discard_staging(root: Path, keep_root: bool = False) -> None:
    """Roll a streamed install back: no staging, and no root left empty by it."""
    staging = root / STAGING_DIR
    if staging.is_dir() and not staging.is_symlink():
        shutil.rmtree(staging)
    elif staging.exists() or staging.is_symlink():
        staging.unlink()
    if not keep_root and root.is_dir() and not root.is_symlink() and not any(root.iterdir()):
        root.rmdir()


def promote(root: Path) -> None:
    """The install's commit point: staging, synced whole, becomes `local/` by one rename, then
    the root and its name in the games dir are synced: the install outlives a power cut."""
    local = root / LOCAL_DIR
    if local.exists() or local.is_symlink():
        raise PeerError("install-failed", f"{root.name}/{LOCAL_DIR} appeared during the stream")
    sync_tree(root / STAGING_DIR)
    os.rename(root / STAGING_DIR, local)
    fsync_dir(root)
    fsync_dir(root.parent)


class _Receiver:
    """Writes one source's stream into staging, checking each entry as it completes.

    It is the lane's `StreamSink`: `entry`, `write` and `end` run in the lane's thread (file
    writes and the digest release the GIL), and each finished entry is reported to the
    event loop, which alone emits events.
    """

    def __init__(
        self,
        ctx: TransferContext,
        game_id: str,
        root: Path,
        source: Source,
        files: list[ArchiveEntry],
    ) -> None:
        self.ctx, self.game_id, self.source = ctx, game_id, source
        self.loop = asyncio.get_running_loop()
        self.staging = root / STAGING_DIR
        self.expected: Iterator[ArchiveEntry] = iter(files)
        self.current: ArchiveEntry | None = None
        self.fd = -1
        self.got = 0
        self.digest = digest.hasher()

    async def run(self) -> None:
        request = StreamRequest(self.source.data_token, self.game_id)
        try:
            await self.ctx.lane.stream(self.source.host, self.source.data_port, request, self)
        finally:
            self._close()  # the lane returns only once its thread has left the sink
        missing = next(self.expected, None)
        if missing is not None:
            raise PeerError("peer-unreachable", f"the stream ended before {missing.path}")

    def entry(self, header: EntryHeader) -> None:
        self._finish_entry()
        entry = next(self.expected, None)
        if entry is None or (entry.path, entry.size) != (header.path, header.size):
            raise PeerError("bad-chunk", f"unexpected entry {header.path!r} in the stream")
        target = self.staging / entry.path
        try:
            self.fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise LocalWriteError(f"{entry.path}: {exc}") from exc
        self.current, self.got, self.digest = entry, 0, digest.hasher()

    def write(self, data: memoryview | bytes) -> None:
        entry = self.current
        if entry is None or self.got + len(data) > entry.size:
            raise PeerError("bad-chunk", "the source sent more bytes than the entry holds")
        try:
            write_all(self.fd, data, self.got)
        except OSError as exc:
            raise LocalWriteError(f"{entry.path}: {exc}") from exc
        self.digest.update(data)
        self.got += len(data)

    def end(self) -> None:
        self._finish_entry()

    def _finish_entry(self) -> None:
        entry = self.current
        if entry is None:
            return
        self._close()
        self.current = None
        if self.got != entry.size:
            raise PeerError(
                "bad-chunk", f"{entry.path}: {self.got} bytes, not the validated {entry.size}"
            )
        if self.digest.hexdigest() != entry.digest:
            raise PeerError(
                "bad-chunk", f"{entry.path}: bytes do not match the validated {digest.NAME}"
            )
        finished = functools.partial(
            source_event,
            self.ctx,
            "download-chunk-finished",
            self.game_id,
            self.source,
            path=f"{STAGING_DIR}/{entry.path}",
            offset=0,
            bytes=entry.size,
        )
        self.loop.call_soon_threadsafe(finished)

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def stream_game(
    ctx: TransferContext, games_dir: Path, game_id: str, version: str, sources: list[Source]
) -> dict[str, Any]:
    """Stream `game_id` into its staging tree; returns the figures for `download-finished`.

    On return every entry of every archive is in `.local.installing/`, checked; the caller
    promotes it. On failure the staging tree may remain: the caller rolls back.
    """
    offers = await collect_offers(ctx, game_id, sources, GetStream(game_id), _listings_of(game_id))
    validated = validate_descriptors(game_id, offers)
    entries = [e for listing in validated.files for e in listing.entries]
    files = [e for e in entries if not e.is_dir]
    agreed = [s for s in sources if s.peer_id in validated.sources]
    ctx.emit(
        "got-game-files",
        game_id=game_id,
        version=version,
        files=[{"path": e.path, "size": e.size} for e in files],
        sources=[{"peer_id": s.peer_id, "peer_addr": s.addr} for s in agreed],
        rejected_sources=list(validated.rejected),
    )
    total = sum(e.size for e in files)
    ctx.emit(
        "download-begin",
        game_id=game_id,
        total_bytes=total,
        files=len(files),
        chunks=len(files),
        sources=[s.addr for s in agreed],
    )
    root = games_dir / game_id
    started = time.monotonic()
    for source in agreed:  # address order: a whole-stream retry moves on to the next one
        try:
            await in_thread(prepare_staging, root, entries)
            await _Receiver(ctx, game_id, root, source, files).run()
        except PeerError as exc:
            source_event(ctx, "download-source-excluded", game_id, source, **refusal(exc))
            continue
        except (OSError, LocalWriteError) as exc:
            raise PeerError("write-failed", f"cannot write {game_id}: {exc}") from exc
        return figures(total, started, len(files), {source.addr: total})
    raise PeerError("sources-lost", f"every source of {game_id} failed to stream it")
