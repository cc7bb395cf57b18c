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
    encode,
)
from peer.transfer.senders import Blocking, to_asker
from peer.transfer.upload import SEND_SLICE, Progress, RateLimiter, reply

log = structlog.get_logger("provider")

# `unrar`'s stdout: a pipe of our own, widened to 1 MiB (Linux's default ceiling for an
# unprivileged process), which a serving thread reads or splices into the asker's socket.
PIPE_BUFFER = 1024 * 1024


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
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """One `unrar p` of the open archive `fd` (for a `listing` or a `stream`, as its log line
    says) and the non-blocking read end of its stdout; killed with its group on the way out,
    and its pipe given `kill_grace` to end (it ends once every process holding it is dead)."""
    with tally.reserve("", "child"):
        out, into = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # a smaller pipe is slower, not wrong
                fcntl.fcntl(into, fcntl.F_SETPIPE_SZ, PIPE_BUFFER)
            proc = await asyncio.create_subprocess_exec(
                unrar,
                "p",
                "-inul",
                "--",
                f"/dev/fd/{fd}",
                stdin=subprocess.DEVNULL,
                stdout=into,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
                start_new_session=True,  # its own process group: a wrapper's children die with it
            )
        except OSError as exc:
            os.close(out)
            raise PeerError("not-servable", f"cannot run {unrar}: {exc}") from None
        finally:
            os.close(into)  # the child holds its own copy
        os.set_blocking(out, False)
        try:
            yield proc, out
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            code: int | None = None
            try:
                async with asyncio.timeout(kill_grace):
                    await Blocking(kill_grace).run(lambda b: _drain(b, out))
                    code = await proc.wait()
            except TimeoutError:  # a grandchild left the group and holds the pipe: drop it
                pass
            finally:
                os.close(out)
            log.info("provider stopped", archive=archive.name, purpose=purpose, exit_code=code)


def _drain(blocking: Blocking, out: int) -> None:
    """Read the pipe to its end: then no process of the pass holds it any more."""
    while blocking.read(out, SEND_SLICE):
        pass


def _ends_here(blocking: Blocking, out: int) -> bool:
    """Whether the pass ends exactly where the listing does (from the serving thread)."""
    return not blocking.read(out, 1)


async def _finish(
    proc: asyncio.subprocess.Process, clean_end: bool, unrar: str, archive: Path, within: float
) -> None:
    """The pass must end where the listing does, and `unrar` must say it succeeded, `within`
    seconds of its output's end (TimeoutError)."""
    async with asyncio.timeout(within):
        code = await proc.wait()
    if code != 0 or not clean_end:
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
        kill_grace = budgets.kill_grace
        async with unrar_payload(archive, fd, unrar, self.tally, kill_grace, "listing") as (
            proc,
            out,
        ):
            entries, clean_end = await Blocking(budgets.progress_deadline).run(
                lambda b: _digest_entries(b, out, headers, unrar, archive)
            )
            await _finish(proc, clean_end, unrar, archive, budgets.progress_deadline)
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
    return tuple(entries), _ends_here(blocking, out)


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


class _EndedEarly(PeerError):
    """The pass ended inside an entry: only a cut connection can tell the receiver."""


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
    budgets = tally.budgets
    grace = budgets.kill_grace
    async with unrar_payload(archive, fd, unrar, tally, grace, "stream") as (proc, out):
        try:
            with progress.paused():  # the thread keeps the deadline: it sees bytes move
                clean_end = await to_asker(
                    writer,
                    budgets.progress_deadline,
                    lambda b, sock: _pump_entries(b, out, sock, listing, limiter, unrar),
                )
        except _EndedEarly:
            writer.close()  # mid-entry: the receiver sees a short entry
            raise
        await _finish(proc, clean_end, unrar, archive, budgets.progress_deadline)


def _pump_entries(
    blocking: Blocking,
    out: int,
    sock: int,
    listing: ArchiveListing,
    limiter: RateLimiter,
    unrar: str,
) -> bool:
    """Every file entry's header, then its bytes spliced from the pass's pipe into the asker's
    socket (from the serving thread); whether the pass ended where the listing does."""
    for entry in listing.entries:
        if entry.is_dir:
            continue
        blocking.write(sock, encode(EntryHeader(entry.path, entry.size)) + b"\n")
        remaining = entry.size
        while remaining:
            n = blocking.splice(out, sock, min(limiter.piece(SEND_SLICE), remaining))
            if not n:
                raise _EndedEarly("not-servable", f"{unrar} ended early in {entry.path}")
            blocking.pause(limiter.debit(n))  # the cap is paid after the fact, in small pieces
            remaining -= n
    return _ends_here(blocking, out)
