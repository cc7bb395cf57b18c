"""Which archives a stream sends as they lie (`plain_offsets`, pure): every file member stored,
whole and where its header says, one after another inside the archive; anything else goes
through unrar. Real archives' headers are read in test_provider.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import rarfile

from peer.protocol import EMPTY_DIGEST, ArchiveEntry, ArchiveListing
from peer.transfer.archives import Placement, placement_of, plain_offsets


def _listing(*entries: tuple[str, int, bool], solid: bool = False) -> ArchiveListing:
    return ArchiveListing(
        "a.eti",
        solid,
        tuple(
            ArchiveEntry(path, 0 if is_dir else size, 0, is_dir, EMPTY_DIGEST)
            for path, size, is_dir in entries
        ),
    )


PLAIN = _listing(("a", 10, False), ("d", 0, True), ("b", 5, False))
FOLDER = Placement(0, 0, False)  # a folder's placement is never looked at


def test_plain_offsets_are_each_file_entrys_data() -> None:
    places = [Placement(100, 10, True), FOLDER, Placement(150, 5, True)]
    assert plain_offsets(PLAIN, places, 155) == (100, 150)


@pytest.mark.parametrize(
    ("why", "places", "size"),
    [
        ("compressed", [Placement(100, 10, True), FOLDER, Placement(150, 5, False)], 155),
        (
            "its data is not its size",
            [Placement(100, 9, True), FOLDER, Placement(150, 5, True)],
            155,
        ),
        (
            "past the archive's end",
            [Placement(100, 10, True), FOLDER, Placement(150, 5, True)],
            154,
        ),
        ("overlapping", [Placement(100, 10, True), FOLDER, Placement(109, 5, True)], 155),
        ("out of order", [Placement(150, 10, True), FOLDER, Placement(100, 5, True)], 160),
    ],
)
def test_plain_offsets_refuse_what_cannot_be_sent_as_it_lies(
    why: str, places: list[Placement], size: int
) -> None:
    assert plain_offsets(PLAIN, places, size) is None, why


def test_a_solid_archive_is_never_sent_as_it_lies() -> None:
    solid = _listing(("a", 10, False), solid=True)
    assert plain_offsets(solid, [Placement(100, 10, True)], 110) is None


def _info(**facts: object) -> SimpleNamespace:
    """A stand-in for rarfile's RarInfo: a stored, whole, plain member, unless `facts` say not."""
    plain: dict[str, object] = {
        "data_offset": 100,
        "compress_size": 10,
        "compress_type": rarfile.RAR_M0,
        "flags": 0,
        "file_redir": None,
        "needs_password": lambda: False,
        "is_symlink": lambda: False,
    }
    return SimpleNamespace(**{**plain, **facts})


def test_a_plain_member_lies_as_it_is() -> None:
    assert placement_of(_info()) == Placement(100, 10, True)


@pytest.mark.parametrize(
    "facts",
    [
        {"data_offset": None},
        {"compress_type": rarfile.RAR_M0 + 3},
        {"flags": rarfile.RAR_FILE_SPLIT_AFTER},
        {"flags": rarfile.RAR_FILE_SPLIT_BEFORE},
        {"file_redir": (4, 0, "other.bin")},
        {"needs_password": lambda: True},
        {"is_symlink": lambda: True},
    ],
    ids=["no-offset", "compressed", "split-after", "split-before", "a-copy", "encrypted", "link"],
)
def test_a_member_that_is_not_its_own_bytes_does_not_lie_as_it_is(facts: dict[str, object]) -> None:
    assert not placement_of(_info(**facts)).as_is
