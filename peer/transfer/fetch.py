"""Fetching a game root from several peers at once.

The plan (who fetches what) comes from `transfer.plan`; this module only moves bytes: it asks
every source for its descriptors, pulls each chunk's slices from the lane, writes and hashes
them itself, and commits the root `version.ini` last, by atomic rename, so an interrupted
download never looks complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from peer.blocking import in_thread
from peer.errors import PeerError
from peer.events import Event
from peer.files import open_regular
from peer.output import Emit
from peer.paths import SENTINEL
from peer.protocol import (
    ChunkRequest,
    FileDescriptor,
    GameFiles,
    GetGame,
    GetStream,
    Reply,
    expect,
)
from peer.transfer.disk import (
    LocalWriteError,
    commit_root,
    figures,
    resume_root,
    save_progress,
    target_path,
    write_all,
)
from peer.transfer.gather import gather_with_grace
from peer.transfer.lane import Lane
from peer.transfer.plan import Chunk, Scheduler, chunks_of, validate_descriptors
from peer.transfer.resume import Progress

Offer = TypeVar("Offer")

OFFER_GRACE = 5.0  # seconds the other sources get once one has offered (at least)


@dataclass(frozen=True)
class Source:
    peer_id: str
    addr: str
    host: str
    data_port: int
    data_token: str


@dataclass(frozen=True)
class FetchSettings:
    chunk_size: int  # the layout every source is asked to describe the files in
    depth: int
    progress_interval: float


class FetchContext(Protocol):
    """What a download needs from the node: its events, its control links and a fast lane."""

    @property
    def emit(self) -> Emit: ...

    @property
    def lane(self) -> Lane: ...

    async def request_peer(self, peer_id: str, message: GetGame | GetStream) -> Reply: ...


def source_event(
    ctx: FetchContext, event: Event, game_id: str, source: Source, **fields: Any
) -> None:
    """An event about one source of a transfer: each names the game and the source alike."""
    ctx.emit(event, game_id=game_id, peer_id=source.peer_id, peer_addr=source.addr, **fields)


def refusal(exc: PeerError) -> dict[str, str]:
    """The `code` and `reason` fields of an event that reports a refusal."""
    return {"code": exc.code, "reason": exc.message}


async def collect_offers(
    ctx: FetchContext,
    game_id: str,
    sources: list[Source],
    request: GetGame | GetStream,
    read: Callable[[Reply], Offer],
) -> dict[str, Offer]:
    """Ask every source at once; a source that refuses or answers nonsense is skipped.

    Once one source has offered, the others get a grace period (`gather.py`); one still silent
    then is skipped. When every source was skipped, the refusal says why (each source's reason), not
    merely that nobody has the game.
    """
    skipped: list[str] = []

    async def ask(source: Source) -> Offer | None:
        try:
            return read(await ctx.request_peer(source.peer_id, request))
        except PeerError as exc:
            skipped.append(f"{source.addr}: {exc.code}: {exc.message}")
            source_event(ctx, "download-source-skipped", game_id, source, **refusal(exc))
            return None

    answers, late = await gather_with_grace([ask(s) for s in sources], OFFER_GRACE)
    for i in late:
        slow = PeerError("peer-unreachable", "no offer in time, while other sources offered")
        skipped.append(f"{sources[i].addr}: {slow.code}: {slow.message}")
        source_event(ctx, "download-source-skipped", game_id, sources[i], **refusal(slow))
    offers = {s.peer_id: a for s, a in zip(sources, answers, strict=True) if a is not None}
    if not offers and skipped:
        raise PeerError("no-peers", f"no source could offer {game_id}: " + "; ".join(skipped))
    return offers


def _files_of(request: GetGame) -> Callable[[Reply], tuple[FileDescriptor, ...]]:
    def read(reply: Reply) -> tuple[FileDescriptor, ...]:
        offer = expect(reply, GameFiles)
        if offer.game_id != request.game_id:
            raise PeerError("bad-message", f"asked for {request.game_id}, got {offer.game_id}")
        if any(f.chunk_size != request.chunk_size for f in offer.files):
            raise PeerError("bad-message", f"asked for {request.chunk_size}-byte chunks")
        return tuple(sorted(offer.files, key=lambda f: f.path))

    return read


class _ChunkWriter:
    """Where one chunk's bytes go as they arrive: written in place and hashed (in the lane's
    thread), never past the chunk's end."""

    def __init__(self, fd: int, chunk: Chunk) -> None:
        self.fd, self.chunk = fd, chunk
        self.hasher = hashlib.sha256()
        self.got = 0

    def write(self, data: memoryview | bytes) -> None:
        if self.got + len(data) > self.chunk.length:
            raise PeerError("bad-chunk", "source sent more bytes than asked")
        try:
            write_all(self.fd, data, self.chunk.offset + self.got)
        except OSError as exc:
            raise LocalWriteError(f"{self.chunk.path}: {exc}") from exc
        self.hasher.update(data)
        self.got += len(data)


class _Download:
    def __init__(
        self,
        ctx: FetchContext,
        settings: FetchSettings,
        root: Path,
        game_id: str,
        files: tuple[FileDescriptor, ...],
        sources: dict[str, Source],
        progress: Progress,
        chunks: list[Chunk],
    ) -> None:
        self.ctx, self.settings, self.root, self.game_id = ctx, settings, root, game_id
        self.sources = sources
        self.total_bytes = sum(f.size for f in files)
        self.verified = progress
        self.index = {chunk: i for i, chunk in enumerate(chunks)}
        self.record_lock = asyncio.Lock()
        self.done_bytes = sum(chunks[i].length for i in progress.verified)
        self.per_source: dict[str, int] = dict.fromkeys(sources, 0)
        self.fds: dict[str, int] = {}
        self.changed = asyncio.Event()
        self.stopped = False  # set when the download ends for any reason; idle workers leave

    def fd(self, rel: str) -> int:
        if rel not in self.fds:
            self.fds[rel] = open_regular(target_path(self.root, rel), os.O_WRONLY)
        return self.fds[rel]

    async def fetch_one(self, chunk: Chunk, source: Source) -> None:
        sink = _ChunkWriter(self.fd(chunk.path), chunk)
        request = ChunkRequest(
            source.data_token, self.game_id, chunk.path, chunk.offset, chunk.length
        )
        await self.ctx.lane.fetch(source.host, source.data_port, request, sink)
        if sink.got != chunk.length or sink.hasher.hexdigest() != chunk.sha256:
            raise PeerError(
                "bad-chunk",
                f"{chunk.path}@{chunk.offset}: bytes do not match the validated SHA-256",
            )
        await self.record(chunk, sink.fd)

    async def record(self, chunk: Chunk, fd: int) -> None:
        """Make a verified chunk durable, then add it to the progress record (one writer at a
        time, so records never go backwards)."""
        try:
            await in_thread(os.fdatasync, fd)
            async with self.record_lock:
                progress = self.verified.with_chunk(self.index[chunk])
                await in_thread(save_progress, self.root, progress)
                self.verified = progress
        except OSError as exc:
            raise LocalWriteError(f"{chunk.path}: {exc}") from exc

    async def worker(self, sched: Scheduler, source: Source) -> None:
        while not sched.finished and not self.stopped:
            chunk = sched.next_for(source.peer_id)
            if chunk is None:
                if source.peer_id in sched.dead or sched.stranded:
                    return
                self.changed.clear()
                await self.changed.wait()
                continue
            try:
                await self.fetch_one(chunk, source)
            except PeerError as exc:
                first_failure = source.peer_id not in sched.dead
                sched.failed(chunk, source.peer_id)
                self._emit("download-chunk-failed", source, chunk, **refusal(exc))
                if first_failure:  # a liar (bad-chunk) or a dead peer: not asked again
                    self._emit("download-source-excluded", source, None, **refusal(exc))
                self.changed.set()
                return
            sched.succeeded(chunk)
            self.done_bytes += chunk.length
            self.per_source[source.peer_id] += chunk.length
            self._emit("download-chunk-finished", source, chunk, bytes=chunk.length)
            self.changed.set()

    def _emit(
        self, event: Event, source: Source, chunk: Chunk | None = None, **fields: Any
    ) -> None:
        where = {"path": chunk.path, "offset": chunk.offset} if chunk else {}
        source_event(self.ctx, event, self.game_id, source, **where, **fields)

    async def progress(self, started: float) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_interval)
            elapsed = max(time.monotonic() - started, 1e-6)
            self.ctx.emit(
                "download-progress",
                game_id=self.game_id,
                downloaded_bytes=self.done_bytes,
                total_bytes=self.total_bytes,
                bytes_per_second=int(self.done_bytes / elapsed),
            )

    async def run(self, chunks: list[Chunk]) -> None:
        """Fetch `chunks` (those the progress record does not already vouch for)."""
        sched = Scheduler.plan(chunks, tuple(self.sources), self.settings.depth)
        workers = [
            asyncio.create_task(self.worker(sched, source))
            for _ in range(self.settings.depth)
            for source in self.sources.values()
        ]
        try:
            # A worker raising (e.g. ENOSPC while writing) aborts the whole download.
            for finished in asyncio.as_completed(workers):
                await finished
        finally:
            self.stopped = True
            self.changed.set()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for fd in self.fds.values():
                os.close(fd)
            self.fds.clear()
        if not sched.finished:
            raise PeerError(
                "sources-lost",
                f"download of {self.game_id} lost every source with "
                f"{sched.total - len(sched.done)} chunk(s) left",
            )


async def download_game(
    ctx: FetchContext,
    settings: FetchSettings,
    games_dir: Path,
    game_id: str,
    version: str,
    sources: list[Source],
) -> dict[str, Any]:
    """Download `game_id` into `games_dir`; returns the figures for `download-finished`."""
    ask = GetGame(game_id, settings.chunk_size)
    offers = await collect_offers(ctx, game_id, sources, ask, _files_of(ask))
    validated = validate_descriptors(game_id, offers)
    if SENTINEL not in {f.path for f in validated.files}:
        raise PeerError("bad-metadata", f"the sources' file list of {game_id} has no {SENTINEL}")
    by_id = {s.peer_id: s for s in sources if s.peer_id in validated.sources}
    ctx.emit(
        "got-game-files",
        game_id=game_id,
        version=version,
        files=[{"path": f.path, "size": f.size} for f in validated.files],
        sources=[{"peer_id": s.peer_id, "peer_addr": s.addr} for s in by_id.values()],
        rejected_sources=list(validated.rejected),
    )
    root = games_dir / game_id
    chunks = chunks_of(validated.files)
    try:
        resumed = await in_thread(resume_root, root, game_id, validated.files, chunks)
    except OSError as exc:
        raise PeerError("write-failed", f"cannot prepare {game_id}: {exc}") from exc
    download = _Download(ctx, settings, root, game_id, validated.files, by_id, resumed, chunks)
    ctx.emit(
        "download-begin",
        game_id=game_id,
        total_bytes=download.total_bytes,
        files=len(validated.files),
        chunks=len(chunks),
        sources=[s.addr for s in by_id.values()],
        resumed_chunks=len(resumed.verified),
        resumed_bytes=download.done_bytes,
    )
    started = time.monotonic()
    progress = asyncio.create_task(download.progress(started))
    try:
        await download.run([c for i, c in enumerate(chunks) if i not in resumed.verified])
        await in_thread(commit_root, root, validated.files)
    except (OSError, LocalWriteError) as exc:
        raise PeerError("write-failed", f"cannot write {game_id}: {exc}") from exc
    finally:
        progress.cancel()
    per_source = {by_id[p].addr: n for p, n in download.per_source.items()}
    return figures(download.total_bytes, started, len(chunks), per_source)
