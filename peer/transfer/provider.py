"""The source side of a streamed install: what the archives hold, and their extracted bytes.

Names, sizes and CRC32s come from the archives' own headers (`rarfile`); the bytes from the
peer's `--unrar`: one `unrar p` per archive, in sorted root order, whose stdout is the archive's
file entries back to back in archive order, cut by the listed sizes. One pass per archive keeps
a solid archive linear. A listing also carries each entry's BLAKE3, taken from one such pass of
our own and cached per archive file (path, inode, size, mtime) as descriptors are, because CRC32
vouches for nothing against a liar: receivers install only bytes matching the voted digests.

Every archive is opened here without following a link and must be a regular file; `unrar`
reads that very open file (`/dev/fd/N`), so a root archive swapped for a link to something
outside the games dir is never listed or extracted. Each `unrar` runs in its own process
group, reserved from the child budget, under a progress deadline, and is killed with its
group whenever its pass ends, for any reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import rarfile
import structlog

from peer import digest
from peer.budgets import Tally
from peer.errors import PeerError
from peer.library import open_root_archive as open_archive
from peer.library import root_archives
from peer.protocol import (
    EMPTY_DIGEST,
    ArchiveEntry,
    ArchiveListing,
    EntryHeader,
    ErrorReply,
    StreamEnd,
)
from peer.transfer.upload import SEND_SLICE, Progress, RateLimiter, progress_deadline, reply

log = structlog.get_logger("provider")

# `unrar`'s stdout: a 1 MiB pipe (Linux's default ceiling for an unprivileged process) read into
# a buffer of the same size, rather than 64 KiB pieces, each a trip through the loop (issue 20:
# the listing's digest pass and the stream both ran at a fraction of `unrar p`).
PIPE_BUFFER = 1024 * 1024


def _widen_pipe(proc: asyncio.subprocess.Process) -> None:
    transport = getattr(proc, "_transport", None)
    pipe = transport.get_pipe_transport(1) if transport is not None else None
    handle = pipe.get_extra_info("pipe") if pipe is not None else None
    if handle is not None:
        with contextlib.suppress(OSError):  # a smaller pipe is slower, not wrong
            fcntl.fcntl(handle.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BUFFER)


Key = tuple[str, int, int, int, int]  # path, device, inode, size, mtime


def _key(archive: Path, fd: int) -> Key:
    st = os.fstat(fd)
    return (str(archive), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_headers(archive: Path, fd: int) -> ArchiveListing:
    """The archive's members from its headers, digests still unknown (the empty one)."""
    try:
        with open(f"/dev/fd/{fd}", "rb") as f, rarfile.RarFile(f) as rf:
            solid = bool(rf.is_solid())
            entries = tuple(
                ArchiveEntry(
                    path=info.filename.rstrip("/"),
                    size=0 if info.is_dir() else int(info.file_size),
                    crc32=int(info.CRC or 0),
                    is_dir=bool(info.is_dir()),
                    digest=EMPTY_DIGEST,
                )
                for info in rf.infolist()
            )
    except (rarfile.Error, OSError, ValueError, TypeError, PeerError) as exc:
        raise PeerError(
            "not-servable", f"{archive.name} is not a readable RAR archive: {exc}"
        ) from None
    return ArchiveListing(archive.name, solid, entries)


@contextlib.asynccontextmanager
async def unrar_payload(
    archive: Path, fd: int, unrar: str, tally: Tally, kill_grace: float, purpose: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """One `unrar p` of the open archive `fd` (for a `listing` or a `stream`, as its log line
    says), its stdout as a reader; killed with its group on the way out, and its pipe given
    `kill_grace` to end."""
    with tally.reserve("", "child"):
        try:
            proc = await asyncio.create_subprocess_exec(
                unrar,
                "p",
                "-inul",
                "--",
                f"/dev/fd/{fd}",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
                start_new_session=True,  # its own process group: a wrapper's children die with it
                limit=PIPE_BUFFER,
            )
        except OSError as exc:
            raise PeerError("not-servable", f"cannot run {unrar}: {exc}") from None
        assert proc.stdout is not None
        _widen_pipe(proc)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            code: int | None = None
            try:
                async with asyncio.timeout(kill_grace):
                    # With every writer dead the pipe ends at once; reading it to its end
                    # closes it.
                    while await proc.stdout.read(SEND_SLICE):
                        pass
                    code = await proc.wait()
            except TimeoutError:  # a grandchild left the group and holds the pipe: drop it
                transport = getattr(proc, "_transport", None)
                if transport is not None:
                    transport.close()
            log.info("provider stopped", archive=archive.name, purpose=purpose, exit_code=code)


async def _finish(proc: asyncio.subprocess.Process, unrar: str, archive: Path) -> None:
    """The pass must end exactly where the listing does, and `unrar` must say it succeeded."""
    assert proc.stdout is not None
    leftover = await proc.stdout.read(1)
    code = await proc.wait()
    if code != 0 or leftover:
        raise PeerError("not-servable", f"{unrar} failed on {archive.name} (exit {code})")


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
        headers = await asyncio.to_thread(read_headers, archive, fd)
        budgets = self.tally.budgets
        entries = []
        async with (
            progress_deadline(budgets.progress_deadline) as progress,
            unrar_payload(archive, fd, unrar, self.tally, budgets.kill_grace, "listing") as proc,
        ):
            assert proc.stdout is not None
            for entry in headers.entries:
                if entry.is_dir:
                    entries.append(entry)
                    continue
                hasher, crc, remaining = digest.hasher(), 0, entry.size
                while remaining:
                    data = await proc.stdout.read(min(SEND_SLICE, remaining))
                    if not data:
                        raise PeerError("not-servable", f"{unrar} ended early in {entry.path}")
                    progress.moved()
                    hasher.update(data)
                    crc = zlib.crc32(data, crc)
                    remaining -= len(data)
                if crc != entry.crc32:
                    raise PeerError("not-servable", f"{archive.name}: {entry.path} fails its CRC")
                entries.append(
                    ArchiveEntry(entry.path, entry.size, entry.crc32, False, hasher.hexdigest())
                )
            await _finish(proc, unrar, archive)
        return ArchiveListing(headers.name, headers.solid, tuple(entries))


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
    try:
        for listing in listings:
            fd = await asyncio.to_thread(open_archive, root / listing.name)
            try:
                archive = root / listing.name
                await _send_archive(writer, archive, fd, listing, unrar, limiter, progress, tally)
            finally:
                os.close(fd)
    except PeerError as exc:
        log.warning("stream failed", game_id=root.name, code=exc.code, error=exc.message)
        if not writer.is_closing():
            await reply(writer, ErrorReply.of(exc))
        return
    await reply(writer, StreamEnd())


async def _send_archive(
    writer: asyncio.StreamWriter,
    archive: Path,
    fd: int,
    listing: ArchiveListing,
    unrar: str,
    limiter: RateLimiter,
    progress: Progress,
    tally: Tally,
) -> None:
    grace = tally.budgets.kill_grace
    async with unrar_payload(archive, fd, unrar, tally, grace, "stream") as proc:
        assert proc.stdout is not None
        for entry in listing.entries:
            if entry.is_dir:
                continue
            await reply(writer, EntryHeader(entry.path, entry.size))
            remaining = entry.size
            while remaining:
                data = await proc.stdout.read(min(limiter.piece(SEND_SLICE), remaining))
                if not data:
                    writer.close()  # mid-entry: the receiver sees a short entry
                    raise PeerError("not-servable", f"{unrar} ended early in {entry.path}")
                progress.moved()
                with progress.paused():  # waiting on our own cap is not the asker's stall
                    await limiter.acquire(len(data))
                writer.write(data)
                await writer.drain()
                progress.moved()
                remaining -= len(data)
        await _finish(proc, unrar, archive)
