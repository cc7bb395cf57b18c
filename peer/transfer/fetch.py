"""Fetching a game root from several peers at once.

The plan (who fetches what) comes from `transfer.plan`; this module only moves bytes: it asks
every source for its descriptors (`transfer.sources`), pulls each chunk's slices from the lane,
writes and hashes them itself, and commits the root `version.ini` last, by atomic rename, so an
interrupted download never looks complete. It reports what each source's chunks have received
to the planner, which learns their rates from it; in the end game a chunk may be fetched by two
sources at once, the duplicate into a scratch file, and `transfer.copies` decides which copy
wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peer import digest
from peer.blocking import in_thread
from peer.errors import PeerError
from peer.events import Event
from peer.files import open_regular
from peer.paths import SENTINEL
from peer.protocol import ChunkRequest, FileDescriptor, GameFiles, GetGame, Reply, expect
from peer.transfer.copies import ChunkWriter, Copies
from peer.transfer.disk import (
    commit_root,
    copy_verified,
    open_scratch,
    resume_root,
    save_progress,
    scratch_path,
    target_path,
)
from peer.transfer.plan import Chunk, Scheduler, chunks_of, validate_descriptors
from peer.transfer.resume import Progress
from peer.transfer.sources import (
    LocalWriteError,
    Source,
    TransferContext,
    collect_offers,
    figures,
    refusal,
    source_event,
)


@dataclass(frozen=True)
class FetchSettings:
    chunk_size: int  # the layout every source is asked to describe the files in
    depth: int
    progress_interval: float
    rate_window: float = 0.5  # seconds a source must be busy before its rate counts
    replan_interval: float = 0.5  # an idle source looks again this often (rates change)


def _files_of(request: GetGame) -> Callable[[Reply], tuple[FileDescriptor, ...]]:
    def read(reply: Reply) -> tuple[FileDescriptor, ...]:
        offer = expect(reply, GameFiles)
        if offer.game_id != request.game_id:
            raise PeerError("bad-message", f"asked for {request.game_id}, got {offer.game_id}")
        if any(f.chunk_size != request.chunk_size for f in offer.files):
            raise PeerError("bad-message", f"asked for {request.chunk_size}-byte chunks")
        return tuple(sorted(offer.files, key=lambda f: f.path))

    return read


class _Download:
    def __init__(
        self,
        ctx: TransferContext,
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
        self.copies = Copies(sources)

    def fd(self, rel: str) -> int:
        if rel not in self.fds:
            self.fds[rel] = open_regular(target_path(self.root, rel), os.O_WRONLY)
        return self.fds[rel]

    async def _receive(self, chunk: Chunk, source: Source, sink: ChunkWriter) -> None:
        request = ChunkRequest(
            source.data_token, self.game_id, chunk.path, chunk.offset, chunk.length
        )
        await self.ctx.lane.fetch(source.host, source.data_port, request, sink)
        if sink.got != chunk.length or sink.hasher.hexdigest() != chunk.digest:
            raise PeerError(
                "bad-chunk",
                f"{chunk.path}@{chunk.offset}: bytes do not match the validated {digest.NAME}",
            )

    async def fetch_one(self, chunk: Chunk, source: Source) -> None:
        """The first copy of a chunk: received straight into its place in the game file."""
        sink = self.copies.sink(chunk, source.peer_id, self.fd(chunk.path), chunk.offset)
        await self._receive(chunk, source, sink)
        await self.copies.claim(chunk, source.peer_id)
        await self.record(chunk, sink.fd)

    async def fetch_copy(self, chunk: Chunk, source: Source) -> None:
        """An end-game duplicate: received into a scratch file of its own, never the game
        file, so a losing or lying copy cannot touch bytes in place. If it is verified first,
        the holder's copy is cancelled (its socket cut, its thread waited for), and only then
        are the verified bytes copied into place, made durable and recorded."""
        path = scratch_path(self.root, self.index[chunk])
        try:
            fd = open_scratch(path)
        except OSError as exc:
            raise LocalWriteError(f"{path.name}: {exc}") from exc
        try:
            sink = self.copies.sink(chunk, source.peer_id, fd, 0)
            await self._receive(chunk, source, sink)
            await self.copies.claim(chunk, source.peer_id)
            target = self.fd(chunk.path)
            try:
                await in_thread(copy_verified, fd, target, chunk)
            except OSError as exc:
                raise LocalWriteError(f"{chunk.path}: {exc}") from exc
            await self.record(chunk, target)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)

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
            self.copies.sample_all(sched)
            chunk = sched.next_for(source.peer_id)
            duplicate = chunk is None and (chunk := sched.endgame_for(source.peer_id)) is not None
            if chunk is None:
                if source.peer_id in sched.dead or sched.stranded:
                    return
                self.changed.clear()
                with contextlib.suppress(TimeoutError):  # rates change while nothing else does
                    async with asyncio.timeout(self.settings.replan_interval):
                        await self.changed.wait()
                continue
            if duplicate:
                self._duplicated(sched, source, chunk)
            try:
                fetch = self.fetch_copy if duplicate else self.fetch_one
                won = await self.copies.attempt(sched, chunk, source.peer_id, fetch(chunk, source))
            except PeerError as exc:
                first_failure = source.peer_id not in sched.dead
                sched.failed(chunk, source.peer_id)
                self._emit("download-chunk-failed", source, chunk, **refusal(exc))
                if first_failure:  # a liar (bad-chunk) or a dead peer: not asked again
                    self._emit("download-source-excluded", source, None, **refusal(exc))
                self.changed.set()
                return
            if won:
                sched.succeeded(chunk)
                self.done_bytes += chunk.length
                self.per_source[source.peer_id] += chunk.length
                self._emit(
                    "download-chunk-finished",
                    source,
                    chunk,
                    bytes=chunk.length,
                    duplicate=duplicate,
                )
            self.changed.set()

    def _duplicated(self, sched: Scheduler, source: Source, chunk: Chunk) -> None:
        holder_id = sched.holder(chunk)
        holder = self.sources[holder_id] if holder_id else None

        def rate(peer_id: str | None) -> int | None:
            r = sched.rate(peer_id) if peer_id else None
            return None if r is None else int(r)

        self._emit(
            "download-chunk-duplicated",
            source,
            chunk,
            holder_id=holder_id,
            holder_addr=holder.addr if holder else None,
            bytes_per_s=rate(source.peer_id),
            holder_bytes_per_s=rate(holder_id),
        )

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
        sched.window = self.settings.rate_window
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
    ctx: TransferContext,
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
