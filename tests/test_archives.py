"""Which archives a stream sends as they lie (`plain_offsets`, pure): every file member stored,
whole and where its header says, one after another inside the archive; anything else goes
through unrar. Real archives' headers are read in test_provider.py."""

from __future__ import annotations

import pytest

from peer.protocol import EMPTY_DIGEST, ArchiveEntry, ArchiveListing
from peer.transfer.archives import Placement, plain_offsets


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
