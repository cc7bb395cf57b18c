"""The source side of a streamed install: what the archives hold, and their extracted bytes.

Listings come from the archives' own headers (`rarfile`, no external tool). The bytes come
from the peer's `--unrar`: one `unrar p` per archive, in sorted root order, whose stdout is the
archive's file entries back to back in archive order, so it is cut by the listed sizes into
one `EntryHeader` and its bytes per file. One pass per archive keeps a solid archive linear
(one `unrar p` per entry would decompress its prefix again for every entry). Memory stays flat:
slices are read from the pipe only as fast as the socket drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import rarfile
import structlog

from peer.errors import PeerError
from peer.library import root_archives
from peer.protocol import ArchiveEntry, ArchiveListing, EntryHeader, ErrorReply, StreamEnd
from peer.transfer.lane import SEND_SLICE, RateLimiter, reply

log = structlog.get_logger("provider")


def list_archives(root: Path) -> tuple[ArchiveListing, ...]:
    """Every root archive's members, in the sorted order a stream sends them (S47)."""
    listings = []
    for archive in root_archives(root):
        try:
            with rarfile.RarFile(archive) as rf:
                solid = bool(rf.is_solid())
                entries = tuple(
                    ArchiveEntry(
                        path=info.filename.rstrip("/"),
                        size=0 if info.is_dir() else int(info.file_size),
                        crc32=int(info.CRC or 0),
                        is_dir=bool(info.is_dir()),
                    )
                    for info in rf.infolist()
                )
        except (rarfile.Error, OSError, ValueError, TypeError, PeerError) as exc:
            raise PeerError(
                "not-servable", f"{archive.name} is not a readable RAR archive: {exc}"
            ) from None
        listings.append(ArchiveListing(archive.name, solid, entries))
    if not listings:
        raise PeerError("not-servable", f"{root.name} has no archive to stream")
    return tuple(listings)


async def send_entries(
    writer: asyncio.StreamWriter,
    root: Path,
    listings: tuple[ArchiveListing, ...],
    unrar: str,
    limiter: RateLimiter,
) -> None:
    """Write every file entry's header and bytes, then `StreamEnd`.

    A failure between entries is reported with an `ErrorReply`; one inside an entry can only
    cut the connection, which the receiver sees as a short entry. Either way the provider
    process is killed before this returns, whatever ended the stream (a cancel included).
    """
    try:
        for listing in listings:
            await _send_archive(writer, root / listing.name, listing, unrar, limiter)
    except PeerError as exc:
        log.warning("stream failed", game_id=root.name, code=exc.code, error=exc.message)
        if not writer.is_closing():
            await reply(writer, ErrorReply.of(exc))
        return
    await reply(writer, StreamEnd())


async def _send_archive(
    writer: asyncio.StreamWriter,
    archive: Path,
    listing: ArchiveListing,
    unrar: str,
    limiter: RateLimiter,
) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            unrar,
            "p",
            "-inul",
            "--",
            str(archive),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a wrapper's children die with it
        )
    except OSError as exc:
        raise PeerError("not-servable", f"cannot run {unrar}: {exc}") from None
    assert proc.stdout is not None
    try:
        for entry in listing.entries:
            if entry.is_dir:
                continue
            await reply(writer, EntryHeader(entry.path, entry.size))
            remaining = entry.size
            while remaining:
                data = await proc.stdout.read(min(SEND_SLICE, remaining))
                if not data:
                    writer.close()  # mid-entry: the receiver sees a short entry
                    raise PeerError("not-servable", f"{unrar} ended early in {entry.path}")
                await limiter.acquire(len(data))
                writer.write(data)
                await writer.drain()
                remaining -= len(data)
        leftover = await proc.stdout.read(1)
        code = await proc.wait()
        if code != 0 or leftover:
            raise PeerError("not-servable", f"{unrar} failed on {archive.name} (exit {code})")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        # With every writer dead the pipe ends at once; reading it to its end closes it.
        while await proc.stdout.read(SEND_SLICE):
            pass
        code = await proc.wait()
        log.info("provider stopped", archive=archive.name, exit_code=code)
