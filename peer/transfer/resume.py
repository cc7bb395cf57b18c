"""Pure resume logic: the record of a download's verified chunks, and what is left to fetch.

A download that dies (SIGKILL, power loss, every source lost) leaves its written chunks on disk
and, next to them, a progress record naming the chunks whose bytes were written, synced and
hash-checked. The next download of the same game reads the record, keeps it only if it was
made for the very descriptors just validated (a new version or another file set discards it),
and fetches the rest. A claimed chunk is still re-hashed on disk before it counts
(`disk.verified_on_disk`): the record says which chunks are worth checking, never that they
are right.

No files here: the record is bytes in and bytes out, the disk side lives in `transfer.disk`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

import msgspec

from peer.protocol import FileDescriptor, Sha256
from peer.transfer.plan import Chunk

MAX_RECORD = 8 * 1024 * 1024  # bytes; ~1M chunk indices, far beyond any game
Index = Annotated[int, msgspec.Meta(ge=0, le=2**31)]


class _Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    game_id: Annotated[str, msgspec.Meta(max_length=64)]
    descriptors: Sha256
    verified: tuple[Index, ...]


@dataclass(frozen=True)
class Progress:
    """Which chunks (indices into `chunks_of(files)`) of the download keyed by `descriptors`
    are verified on disk."""

    game_id: str
    descriptors: str
    verified: frozenset[int]

    def with_chunk(self, index: int) -> Progress:
        return Progress(self.game_id, self.descriptors, self.verified | {index})


def fingerprint(game_id: str, files: tuple[FileDescriptor, ...]) -> str:
    """A digest of the validated descriptors: sizes, chunk layout and every chunk hash (the
    sentinel's, hence the version, included). Any change to them discards a record."""
    body = msgspec.json.encode([game_id, sorted(files, key=lambda f: f.path)])
    return hashlib.sha256(body).hexdigest()


def encode_progress(progress: Progress) -> bytes:
    record = _Record(progress.game_id, progress.descriptors, tuple(sorted(progress.verified)))
    return msgspec.json.encode(record)


def decode_progress(data: bytes) -> Progress | None:
    """The record in `data`, or None for anything that is not one (torn, foreign, oversized):
    an unreadable record only costs a full fetch."""
    if len(data) > MAX_RECORD:
        return None
    try:
        record = msgspec.json.decode(data, type=_Record)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeDecodeError):
        return None
    return Progress(record.game_id, record.descriptors, frozenset(record.verified))


def claimed_chunks(
    record: Progress | None, game_id: str, descriptors: str, chunks: list[Chunk]
) -> list[int]:
    """Indices of `chunks` the record vouches for, to be re-hashed before they count.

    Nothing when there is no record, when it belongs to another game or other descriptors, or
    when it names a chunk these descriptors do not have (then it cannot be ours).
    """
    if record is None or record.game_id != game_id or record.descriptors != descriptors:
        return []
    if any(i >= len(chunks) for i in record.verified):
        return []
    return sorted(record.verified)
