"""The source side of a streamed install: what the archives hold, and their extracted bytes.

A listing is the archives' headers (`peer.transfer.archives`) with each entry's BLAKE3, from one
`unrar p` pass of our own (the peer's `--unrar`) cached per archive file (path, inode, size,
mtime) as descriptors are, because CRC32 vouches for nothing against a liar: receivers install
only bytes matching the voted digests.

A stream sends each archive's file entries back to back, in sorted root order: a stored archive
straight from its bytes by `sendfile` (`unrar p` would only copy them through a pipe, and on two
cores that copy halved the stream: issue 20), any other by one `unrar p` pass, cut by the listed
sizes (one pass per archive keeps a solid archive linear). Either way the headers, read again as
the stream starts, must still be the listed ones.

Every archive is opened here without following a link and must be a regular file; `unrar`
reads that very open file (`peer.transfer.unrar`), so a root archive swapped for a link to
something outside the games dir is never listed, extracted or sent.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import structlog

from peer import digest
from peer.budgets import Tally
from peer.errors import PeerError
from peer.library import open_root_archive as open_archive
from peer.library import root_archives
from peer.protocol import ArchiveEntry, ArchiveListing, EntryHeader, ErrorReply, StreamEnd, encode
from peer.transfer.archives import read_headers, undigested
from peer.transfer.senders import Blocking, to_asker
from peer.transfer.unrar import ends_here, finish, unrar_payload
from peer.transfer.upload import SEND_SLICE, Progress, RateLimiter, reply

log = structlog.get_logger("provider")

T = TypeVar("T")
Key = tuple[str, int, int, int, int]  # path, device, inode, size, mtime


def _key(archive: Path, fd: int) -> Key:
    st = os.fstat(fd)
    return (str(archive), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class ListingCache:
    """Listings with digests, one extraction pass per archive file (while it stays the same
    file); `lock` keeps concurrent first askers to one pass."""

    unrar: str | None
    tally: Tally
    _cache: dict[Key, ArchiveListing] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def listings(self, root: Path) -> tuple[ArchiveListing, ...]:
        """Every root archive's members with digests, in the sorted order a stream sends them."""
        unrar = self.unrar
        if unrar is None:
            raise PeerError("not-servable", "this peer streams no installs (it has no --unrar)")
        archives = root_archives(root)
        if not archives:
            raise PeerError("not-servable", f"{root.name} has no archive to stream")
        found: list[ArchiveListing] = []
        keys: set[Key] = set()
        for archive in archives:
            fd = await asyncio.to_thread(open_archive, archive)
            try:
                key = _key(archive, fd)
                keys.add(key)
                async with self.lock:
                    listing = self._cache.get(key)
                    if listing is None:
                        listing = await self._digest(archive, fd, unrar)
                        self._cache[key] = listing
            finally:
                os.close(fd)
            found.append(listing)
        for stale in [k for k in self._cache if k[0].startswith(f"{root}/") and k not in keys]:
            del self._cache[stale]
        return tuple(found)

    async def _digest(self, archive: Path, fd: int, unrar: str) -> ArchiveListing:
        try:
            return await self._digest_pass(archive, fd, unrar)
        except TimeoutError:
            seconds = self.tally.budgets.progress_deadline
            raise PeerError(
                "not-servable", f"{unrar} made no progress on {archive.name} in {seconds} s"
            ) from None

    async def _digest_pass(self, archive: Path, fd: int, unrar: str) -> ArchiveListing:
        headers = (await asyncio.to_thread(read_headers, archive, fd)).listing
        budgets = self.tally.budgets
        kill_grace = budgets.kill_grace
        async with unrar_payload(archive, fd, unrar, self.tally, kill_grace, "listing") as (
            proc,
            out,
        ):
            entries, clean_end = await Blocking(budgets.progress_deadline).run(
                lambda b: _digest_entries(b, out, headers, unrar, archive)
            )
            await finish(proc, clean_end, unrar, archive, budgets.progress_deadline)
        return ArchiveListing(headers.name, headers.solid, entries)


def _digest_entries(
    blocking: Blocking, out: int, headers: ArchiveListing, unrar: str, archive: Path
) -> tuple[tuple[ArchiveEntry, ...], bool]:
    """Each file entry's digest from the pass's bytes, its CRC32 checked against the header's
    (from the serving thread); and whether the pass ended where the listing does."""
    entries = []
    for entry in headers.entries:
        if entry.is_dir:
            entries.append(entry)
            continue
        hasher, crc, remaining = digest.hasher(), 0, entry.size
        while remaining:
            data = blocking.read(out, min(SEND_SLICE, remaining))
            if not data:
                raise PeerError("not-servable", f"{unrar} ended early in {entry.path}")
            hasher.update(data)
            crc = zlib.crc32(data, crc)
            remaining -= len(data)
        if crc != entry.crc32:
            raise PeerError("not-servable", f"{archive.name}: {entry.path} fails its CRC")
        entries.append(ArchiveEntry(entry.path, entry.size, entry.crc32, False, hasher.hexdigest()))
    return tuple(entries), ends_here(blocking, out)


async def send_entries(
    writer: asyncio.StreamWriter,
    root: Path,
    listings: tuple[ArchiveListing, ...],
    unrar: str,
    limiter: RateLimiter,
    progress: Progress,
    tally: Tally,
) -> None:
    """Write every file entry's header and bytes, then `StreamEnd`.

    A failure between entries is reported with an `ErrorReply`; one inside an entry can only
    cut the connection, which the receiver sees as a short entry. Either way the provider
    process is killed before this returns, whatever ended the stream (a cancel or a stalled
    reader's deadline included).
    """
    sending = _Sending(writer, progress, limiter, tally, unrar)
    try:
        for listing in listings:
            await sending.archive(root / listing.name, listing)
    except PeerError as exc:
        log.warning("stream failed", game_id=root.name, code=exc.code, error=exc.message)
        if not writer.is_closing():
            await reply(writer, ErrorReply.of(exc))
        return
    await reply(writer, StreamEnd())


class _EndedEarly(PeerError):
    """The pass ended inside an entry: only a cut connection can tell the receiver."""


@dataclass(frozen=True)
class _Sending:
    """One stream's sending end: the asker's connection and deadline, the upload cap, the
    budgets, and the unrar that extracts what is not stored."""

    writer: asyncio.StreamWriter
    progress: Progress
    limiter: RateLimiter
    tally: Tally
    unrar: str

    async def archive(self, archive: Path, listing: ArchiveListing) -> None:
        fd = await asyncio.to_thread(open_archive, archive)
        stored = complete = False
        try:
            headers = await asyncio.to_thread(read_headers, archive, fd)
            if headers.listing != undigested(listing):
                raise PeerError("not-servable", f"{archive.name} changed since it was listed")
            offsets = headers.offsets
            if offsets is None:
                await self._extracted(archive, fd, listing)
            else:
                stored = True
                limiter = self.limiter
                await self._in_thread(
                    lambda b, sock: _pump_stored(
                        b, sock, fd, offsets, listing, limiter, archive.name
                    )
                )
            complete = True
        finally:
            os.close(fd)  # first: once the log says a send ended, nothing holds the archive
            if stored:
                log.info("archive sent as stored", archive=archive.name, complete=complete)

    async def _extracted(self, archive: Path, fd: int, listing: ArchiveListing) -> None:
        unrar, limiter, budgets = self.unrar, self.limiter, self.tally.budgets
        grace = budgets.kill_grace
        async with unrar_payload(archive, fd, unrar, self.tally, grace, "stream") as (proc, out):
            clean_end = await self._in_thread(
                lambda b, sock: _pump_pass(b, sock, out, listing, limiter, unrar)
            )
            await finish(proc, clean_end, unrar, archive, budgets.progress_deadline)

    async def _in_thread(self, work: Callable[[Blocking, int], T]) -> T:
        """`work` in a serving thread; a cut mid-entry closes the connection, the only way
        left to tell the receiver (it sees a short entry)."""
        try:
            with self.progress.paused():  # the thread keeps the deadline: it sees bytes move
                return await to_asker(self.writer, self.progress.seconds, work)
        except _EndedEarly:
            self.writer.close()
            raise


def _pump_stored(
    blocking: Blocking,
    sock: int,
    fd: int,
    offsets: tuple[int, ...],
    listing: ArchiveListing,
    limiter: RateLimiter,
    name: str,
) -> None:
    """The members sent as they lie in the archive `fd`, by `sendfile`, entry by entry."""

    def move(index: int, sent: int, n: int) -> int:
        return blocking.sendfile(sock, fd, offsets[index] + sent, n)

    _pump_entries(blocking, sock, listing, limiter, name, move)


def _pump_pass(
    blocking: Blocking,
    sock: int,
    out: int,
    listing: ArchiveListing,
    limiter: RateLimiter,
    unrar: str,
) -> bool:
    """The pass's bytes spliced from its pipe into the asker's socket, entry by entry; whether
    the pass ended where the listing does."""
    _pump_entries(
        blocking, sock, listing, limiter, unrar, lambda i, sent, n: blocking.splice(out, sock, n)
    )
    return ends_here(blocking, out)


# Moves up to `n` bytes of the `index`-th file entry, `sent` of them already gone, into the
# asker's socket; how many it moved (0: its source ended).
Move = Callable[[int, int, int], int]


def _pump_entries(
    blocking: Blocking,
    sock: int,
    listing: ArchiveListing,
    limiter: RateLimiter,
    source: str,
    move: Move,
) -> None:
    """Every file entry's header, then its bytes by `move` (from the serving thread), paced by
    the upload cap."""
    files = [entry for entry in listing.entries if not entry.is_dir]
    for index, entry in enumerate(files):
        blocking.write(sock, encode(EntryHeader(entry.path, entry.size)) + b"\n")
        sent = 0
        while sent < entry.size:
            n = move(index, sent, min(limiter.piece(SEND_SLICE), entry.size - sent))
            if not n:
                raise _EndedEarly("not-servable", f"{source} ended early in {entry.path}")
            blocking.pause(limiter.debit(n))  # the cap is paid after the fact, in small pieces
            sent += n
