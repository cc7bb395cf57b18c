"""The resume record: what it keys on, what it refuses to read, and its life on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from blake3 import blake3

from peer.paths import PROGRESS, RESERVED_ROOT_NAMES
from peer.protocol import FileDescriptor
from peer.transfer import disk
from peer.transfer.plan import chunks_of
from peer.transfer.resume import (
    MAX_RECORD,
    Progress,
    claimed_chunks,
    decode_progress,
    encode_progress,
    fingerprint,
)

A, B, C = "a" * 64, "b" * 64, "c" * 64
FILES = (
    FileDescriptor("data.bin", 20, 8, (A, B, C)),
    FileDescriptor("version.ini", 9, 8, (A, B)),
)
CHUNKS = chunks_of(FILES)


def test_the_fingerprint_is_stable_and_covers_every_field() -> None:
    base = fingerprint("g1", FILES)
    assert base == fingerprint("g1", tuple(reversed(FILES))), "order of the offer is no matter"
    others = [
        fingerprint("g2", FILES),
        fingerprint("g1", (FileDescriptor("data.bin", 20, 8, (A, B, A)), FILES[1])),
        fingerprint("g1", (FileDescriptor("data.bin", 19, 8, (A, B, C)), FILES[1])),
        fingerprint("g1", (FileDescriptor("data.bin", 20, 10, (A, B)), FILES[1])),
        fingerprint("g1", (FileDescriptor("other.bin", 20, 8, (A, B, C)), FILES[1])),
        fingerprint("g1", FILES[:1]),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_a_record_round_trips() -> None:
    progress = Progress("g1", fingerprint("g1", FILES), frozenset({0, 3}))
    assert decode_progress(encode_progress(progress)) == progress


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"game_id": "g1", "descriptors": "' + A.encode() + b'"}',
        b'{"game_id": "g1", "descriptors": "' + A.encode() + b'", "verified": [-1]}',
        b'{"game_id": "g1", "descriptors": "nothex", "verified": []}',
        b'{"game_id": "g1", "descriptors": "' + A.encode() + b'", "verified": [], "x": 1}',
        b'{"game_id": "g1", "descriptors": "' + A.encode() + b'", "verified": [1.5]}',
        b"\xff\xfe",
        b" " * (MAX_RECORD + 1),
    ],
)
def test_anything_but_a_record_reads_as_none(data: bytes) -> None:
    assert decode_progress(data) is None


def test_a_record_padded_to_the_size_limit_still_reads() -> None:
    progress = Progress("g1", A, frozenset({0, 3}))
    data = encode_progress(progress)
    assert decode_progress(data + b" " * (MAX_RECORD - len(data))) == progress


def test_only_a_record_for_this_game_and_these_descriptors_claims_chunks() -> None:
    mine = fingerprint("g1", FILES)
    record = Progress("g1", mine, frozenset({3, 1}))
    assert claimed_chunks(record, "g1", mine, CHUNKS) == [1, 3]
    assert claimed_chunks(None, "g1", mine, CHUNKS) == []
    assert claimed_chunks(record, "g2", mine, CHUNKS) == []
    assert claimed_chunks(record, "g1", fingerprint("g2", FILES), CHUNKS) == []
    past_the_end = Progress("g1", mine, frozenset({1, len(CHUNKS)}))
    assert claimed_chunks(past_the_end, "g1", mine, CHUNKS) == []


def test_the_record_is_bookkeeping_never_transferred() -> None:
    assert PROGRESS in RESERVED_ROOT_NAMES


def test_saving_replaces_the_record_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    first = Progress("g1", A, frozenset({0}))
    second = first.with_chunk(2)
    disk.save_progress(tmp_path, first)
    disk.save_progress(tmp_path, second)
    assert disk.load_progress(tmp_path) == second
    assert sorted(os.listdir(tmp_path)) == [PROGRESS]


def test_a_missing_torn_or_linked_record_loads_as_none(tmp_path: Path) -> None:
    assert disk.load_progress(tmp_path) is None
    (tmp_path / PROGRESS).write_bytes(encode_progress(Progress("g1", A, frozenset({0})))[:-3])
    assert disk.load_progress(tmp_path) is None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(encode_progress(Progress("g1", A, frozenset({0}))))
    (tmp_path / PROGRESS).unlink()
    (tmp_path / PROGRESS).symlink_to(elsewhere)
    assert disk.load_progress(tmp_path) is None


def test_chunks_on_disk_are_judged_by_their_hash(tmp_path: Path) -> None:
    data = bytes(range(20))
    (tmp_path / "data.bin").write_bytes(data)
    digest = [blake3(p).hexdigest() for p in (data[0:8], data[8:16], data[16:20])]
    files = (FileDescriptor("data.bin", 20, 8, tuple(digest)),)
    chunks = chunks_of(files)
    assert disk.verified_on_disk(tmp_path, chunks) == [True, True, True]
    (tmp_path / "data.bin").write_bytes(data[:8] + b"\0" + data[9:18])  # one byte off, short
    assert disk.verified_on_disk(tmp_path, chunks) == [True, False, False]
    (tmp_path / "data.bin").unlink()
    assert disk.verified_on_disk(tmp_path, chunks) == [False, False, False]


def test_a_record_that_is_a_fifo_loads_as_none_without_blocking(tmp_path: Path) -> None:
    """A FIFO under the record's name would block a reader forever (and the download's cancel
    with it, which waits for the thread)."""
    os.mkfifo(tmp_path / PROGRESS)
    assert disk.load_progress(tmp_path) is None
