"""What a root archive's headers say: its members (a listing, digests still unknown) and, when
its members lie in it as they are, where.

A stored archive (every file member `-m0`, not encrypted, not split over volumes, not a link,
the archive not solid) is sent by a stream straight from its bytes; whether one is, and where
each member's bytes start, is decided here from the headers alone (`plain_offsets`, pure), and a
header that places members out of order or past the archive's end is not trusted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import rarfile

from peer.errors import PeerError
from peer.protocol import EMPTY_DIGEST, ArchiveEntry, ArchiveListing


@dataclass(frozen=True)
class Placement:
    """Where one member's data lies in its archive, as its header says; `as_is` when that data
    is the member's bytes themselves: stored (`-m0`), not encrypted, whole (not split over
    volumes), not a link or a copy of another member."""

    offset: int
    length: int
    as_is: bool


def plain_offsets(
    listing: ArchiveListing, placements: Sequence[Placement], archive_size: int
) -> tuple[int, ...] | None:
    """Each file entry's offset in the archive, when every one can be sent from the archive as
    it is; None when any needs `unrar`. The spans must follow one another inside the archive,
    as a reader of the headers finds them: a header that says otherwise is not trusted."""
    if listing.solid:
        return None
    offsets, end = [], 0
    for entry, place in zip(listing.entries, placements, strict=True):
        if entry.is_dir:
            continue
        if not place.as_is or place.length != entry.size or place.offset < end:
            return None
        end = place.offset + place.length
        if end > archive_size:
            return None
        offsets.append(place.offset)
    return tuple(offsets)


@dataclass(frozen=True)
class Headers:
    """An archive as its headers describe it: its listing (digests still unknown, the empty
    one) and, when it can be sent as it lies, each file entry's offset in it."""

    listing: ArchiveListing
    offsets: tuple[int, ...] | None


def placement_of(info: rarfile.RarInfo) -> Placement:
    """Where a member's header puts its data, and whether that data is the member as it is."""
    split = info.flags & (rarfile.RAR_FILE_SPLIT_BEFORE | rarfile.RAR_FILE_SPLIT_AFTER)
    as_is = (
        info.data_offset is not None
        and info.compress_type == rarfile.RAR_M0
        and not info.needs_password()
        and info.file_redir is None
        and not info.is_symlink()
        and not split
    )
    return Placement(int(info.data_offset or 0), int(info.compress_size or 0), bool(as_is))


def read_headers(archive: Path, fd: int) -> Headers:
    """The archive's members from its headers, and where their bytes lie."""
    try:
        with open(f"/dev/fd/{fd}", "rb") as f, rarfile.RarFile(f) as rf:
            infos = rf.infolist()
            listing = ArchiveListing(
                archive.name,
                bool(rf.is_solid()),
                tuple(
                    ArchiveEntry(
                        path=info.filename.rstrip("/"),
                        size=0 if info.is_dir() else int(info.file_size),
                        crc32=int(info.CRC or 0),
                        is_dir=bool(info.is_dir()),
                        digest=EMPTY_DIGEST,
                    )
                    for info in infos
                ),
            )
            placements = [placement_of(info) for info in infos]
    except (rarfile.Error, OSError, ValueError, TypeError, PeerError) as exc:
        raise PeerError(
            "not-servable", f"{archive.name} is not a readable RAR archive: {exc}"
        ) from None
    return Headers(listing, plain_offsets(listing, placements, os.fstat(fd).st_size))


def undigested(listing: ArchiveListing) -> ArchiveListing:
    """`listing` as its archive's headers alone say it (the digests come from an extraction)."""
    return ArchiveListing(
        listing.name,
        listing.solid,
        tuple(
            ArchiveEntry(e.path, e.size, e.crc32, e.is_dir, EMPTY_DIGEST) for e in listing.entries
        ),
    )
