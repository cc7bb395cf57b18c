"""`stream_game`, the receiving side of a streamed install, against an in-memory lane.

Like tests/test_fetch.py, on tests/mocklane.py: the control replies and the lane are mocks keyed
by peer id and host, so each test decides what every source offers and streams, and sees every
event. The staging
helpers (`prepare_staging`, `discard_staging`, `promote`) are driven on tmp_path directly.
"""

from __future__ import annotations

import asyncio
import errno
import os
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3
from mocklane import GAME, MockContext, StreamHandler, source

from harness import crcforge
from peer.errors import PeerError
from peer.paths import LOCAL_DIR, STAGING_DIR
from peer.protocol import (
    EMPTY_DIGEST,
    ArchiveEntry,
    ArchiveListing,
    EntryHeader,
    GetStream,
    StreamManifest,
    StreamRequest,
)
from peer.transfer.sources import Source
from peer.transfer.stream import discard_staging, prepare_staging, promote, stream_game

VERSION = "20250101"
LIMIT = 2.0

Item = EntryHeader | bytes
# What a source streams: the items it yields, given the staging dir (for tests that meddle).
Script = Callable[[Path], list[Item]]

FILES = {"a/b/deep.bin": b"0123456789" * 3, "c.txt": b"sea", "empty.txt": b""}
FOLDER = "a/empty"


def entry(path: str, data: bytes) -> ArchiveEntry:
    digest = blake3(data).hexdigest()
    return ArchiveEntry(path, len(data), zlib.crc32(data), False, digest)


ENTRIES = (
    ArchiveEntry(path=FOLDER, size=0, crc32=0, is_dir=True, digest=EMPTY_DIGEST),
    *(entry(p, d) for p, d in FILES.items()),
)
LISTING = (ArchiveListing("g1.eti", True, ENTRIES),)


def honest(files: dict[str, bytes] = FILES, piece: int = 7) -> Script:
    """Every entry's header, then its bytes in slices of `piece`."""

    def items(_staging: Path) -> list[Item]:
        out: list[Item] = []
        for path, data in files.items():
            out.append(EntryHeader(path, len(data)))
            out += [data[i : i + piece] for i in range(0, len(data), piece)]
        return out

    return items


def scripted(script: Script, staging: Path) -> StreamHandler:
    """A source that streams what `script` gives, yielding to the loop before each item."""

    async def stream(_request: StreamRequest) -> AsyncIterator[Item]:
        for item in script(staging):
            await asyncio.sleep(0)
            yield item

    return stream


class FakeContext(MockContext):
    """A node as the stream receiver sees it; each source's script sees the staging dir."""

    def __init__(self, games: Path) -> None:
        super().__init__(asks=GetStream)
        self.staging = games / GAME / STAGING_DIR

    def add(
        self,
        name: str,
        script: Script | None = None,
        listing: tuple[ArchiveListing, ...] = LISTING,
        game_id: str = GAME,
    ) -> Source:
        added = source(name)
        self.replies[added.peer_id] = StreamManifest(game_id, listing)
        self.lane.streams[name] = scripted(script or honest(), self.staging)
        return added


@pytest.fixture
def games(tmp_path: Path) -> Path:
    (tmp_path / "games").mkdir()
    return tmp_path / "games"


async def run(ctx: FakeContext, games: Path, sources: list[Source]) -> dict[str, Any]:
    async with asyncio.timeout(LIMIT):
        return await stream_game(ctx, games, GAME, VERSION, sources)


def staged(games: Path) -> dict[str, bytes]:
    staging = games / GAME / STAGING_DIR
    return {str(p.relative_to(staging)): p.read_bytes() for p in staging.rglob("*") if p.is_file()}


# -- a whole stream ------------------------------------------------------------------------------


async def test_a_stream_stages_every_entry_and_reports_it(games: Path) -> None:
    ctx = FakeContext(games)
    stdout = os.fstat(1)
    a, b = ctx.add("a"), ctx.add("b")
    result = await run(ctx, games, [a, b])
    assert staged(games) == FILES
    assert (games / GAME / STAGING_DIR / FOLDER).is_dir(), "empty folders of the archive too"
    umask = os.umask(0)
    os.umask(umask)
    modes = {p: (games / GAME / STAGING_DIR / p).stat().st_mode & 0o777 for p in FILES}
    assert set(modes.values()) == {0o644 & ~umask}
    one_source_streams_all = [("a", StreamRequest("token-a", GAME))]
    assert ctx.lane.stream_requests == one_source_streams_all
    total = sum(len(d) for d in FILES.values())
    assert ctx.named("got-game-files") == [
        {
            "game_id": GAME,
            "version": VERSION,
            "files": [{"path": p, "size": len(d)} for p, d in FILES.items()],
            "sources": [
                {"peer_id": "id-a", "peer_addr": "a:4000"},
                {"peer_id": "id-b", "peer_addr": "b:4000"},
            ],
            "rejected_sources": [],
        }
    ]
    assert ctx.named("download-begin") == [
        {
            "game_id": GAME,
            "total_bytes": total,
            "files": len(FILES),
            "chunks": len(FILES),
            "sources": ["a:4000", "b:4000"],
        }
    ]
    assert ctx.named("download-chunk-finished") == [
        {
            "game_id": GAME,
            "peer_id": "id-a",
            "peer_addr": "a:4000",
            "path": f"{STAGING_DIR}/{p}",
            "offset": 0,
            "bytes": len(d),
        }
        for p, d in FILES.items()
    ]
    assert (result["bytes"], result["chunks"], result["bytes_per_source"]) == (
        total,
        len(FILES),
        {"a:4000": total},
    )
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (stdout.st_dev, stdout.st_ino), "stdout left alone"


async def test_a_source_whose_listing_disagrees_is_rejected(games: Path) -> None:
    ctx = FakeContext(games)
    odd = (ArchiveListing("g1.eti", False, ENTRIES),)
    sources = [ctx.add("a"), ctx.add("b"), ctx.add("c", listing=odd)]
    await run(ctx, games, sources)
    (got,) = ctx.named("got-game-files")
    assert got["rejected_sources"] == ["id-c"]
    assert [s["peer_id"] for s in got["sources"]] == ["id-a", "id-b"]


async def test_listings_for_another_game_are_skipped(games: Path) -> None:
    ctx = FakeContext(games)
    sources = [ctx.add("a", game_id="g2"), ctx.add("b")]
    await run(ctx, games, sources)
    assert ctx.named("download-source-skipped") == [
        {
            "game_id": GAME,
            "peer_id": "id-a",
            "peer_addr": "a:4000",
            "code": "bad-message",
            "reason": "asked for g1, got g2",
        }
    ]
    assert staged(games) == FILES


async def test_a_tie_between_listings_names_the_game(games: Path) -> None:
    ctx = FakeContext(games)
    odd = (ArchiveListing("g1.eti", False, ENTRIES),)
    with pytest.raises(PeerError) as caught:
        await run(ctx, games, [ctx.add("a"), ctx.add("b", listing=odd)])
    assert caught.value.code == "ambiguous-metadata"
    assert "files of g1 " in caught.value.message


# -- a source that streams the wrong thing is excluded, and the next one streams -----------------


def excluded_then_good(games: Path, bad: Script) -> tuple[FakeContext, list[Source]]:
    ctx = FakeContext(games)
    return ctx, [ctx.add("a", bad), ctx.add("b")]


async def assert_excluded(games: Path, bad: Script, code: str, reason: str) -> None:
    ctx, sources = excluded_then_good(games, bad)
    await run(ctx, games, sources)
    assert ctx.named("download-source-excluded") == [
        {"game_id": GAME, "peer_id": "id-a", "peer_addr": "a:4000", "code": code, "reason": reason}
    ]
    assert staged(games) == FILES, "the retry starts from a fresh staging tree"
    chunks = ctx.named("download-chunk-finished")
    assert {c["peer_id"] for c in chunks[-len(FILES) :]} == {"id-b"}


async def test_an_entry_out_of_order_excludes_the_source(games: Path) -> None:
    reordered = dict(reversed(list(FILES.items())))
    await assert_excluded(
        games, honest(reordered), "bad-chunk", "unexpected entry 'empty.txt' in the stream"
    )


async def test_an_entry_of_the_wrong_size_excludes_the_source(games: Path) -> None:
    def items(_staging: Path) -> list[Item]:
        return [EntryHeader("a/b/deep.bin", 29), b"x" * 29]

    await assert_excluded(
        games, items, "bad-chunk", "unexpected entry 'a/b/deep.bin' in the stream"
    )


async def test_an_entry_beyond_the_listing_excludes_the_source(games: Path) -> None:
    extra = {**FILES, "more.txt": b"more"}
    await assert_excluded(
        games, honest(extra), "bad-chunk", "unexpected entry 'more.txt' in the stream"
    )


async def test_more_bytes_than_the_entry_holds_exclude_the_source(games: Path) -> None:
    def items(staging: Path) -> list[Item]:
        return [EntryHeader("a/b/deep.bin", 30), b"y" * 25, b"y" * 6]

    await assert_excluded(
        games, items, "bad-chunk", "the source sent more bytes than the entry holds"
    )


async def test_fewer_bytes_than_the_entry_holds_exclude_the_source(games: Path) -> None:
    def items(staging: Path) -> list[Item]:
        return [EntryHeader("a/b/deep.bin", 30), b"y" * 25, EntryHeader("c.txt", 3), b"sea"]

    await assert_excluded(games, items, "bad-chunk", "a/b/deep.bin: 25 bytes, not the validated 30")


async def test_other_bytes_of_the_right_size_exclude_the_source(games: Path) -> None:
    def items(staging: Path) -> list[Item]:
        return [EntryHeader("a/b/deep.bin", 30), b"z" * 30]

    await assert_excluded(
        games, items, "bad-chunk", "a/b/deep.bin: bytes do not match the validated BLAKE3"
    )


async def test_bytes_that_keep_size_and_crc_but_not_the_digest_exclude_the_source(
    games: Path,
) -> None:
    """A liar whose bytes match every validated size and CRC32 (forged: the first byte flipped,
    four bytes recomputed) is excluded on the digest, and the honest source's bytes land."""
    forged = {path: crcforge.corrupt_keeping_crc(data) for path, data in FILES.items()}
    deep = FILES["a/b/deep.bin"]
    assert forged["a/b/deep.bin"] != deep and zlib.crc32(forged["a/b/deep.bin"]) == zlib.crc32(deep)
    await assert_excluded(
        games,
        honest(forged),
        "bad-chunk",
        "a/b/deep.bin: bytes do not match the validated BLAKE3",
    )


async def test_a_stream_that_ends_early_excludes_the_source(games: Path) -> None:
    short = dict(list(FILES.items())[:2])
    await assert_excluded(
        games, honest(short), "peer-unreachable", "the stream ended before empty.txt"
    )


async def test_when_every_source_fails_the_sources_are_lost(games: Path) -> None:
    ctx = FakeContext(games)
    short = honest(dict(list(FILES.items())[:1]))
    with pytest.raises(PeerError) as caught:
        await run(ctx, games, [ctx.add("a", short), ctx.add("b", short)])
    assert caught.value.code == "sources-lost"
    assert caught.value.message == "every source of g1 failed to stream it"
    assert len(ctx.named("download-source-excluded")) == 2


async def test_a_planted_symlink_is_a_local_write_failure_not_followed(
    games: Path, tmp_path: Path
) -> None:
    """The target is opened O_EXCL|O_NOFOLLOW: whatever sits there is never written through,
    and a local write failure aborts at once instead of blaming the source."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")

    def planting(staging: Path) -> list[Item]:
        (staging / "c.txt").symlink_to(outside)
        return honest()(staging)

    ctx = FakeContext(games)
    with pytest.raises(PeerError) as caught:
        await run(ctx, games, [ctx.add("a", planting), ctx.add("b")])
    assert caught.value.code == "write-failed"
    assert caught.value.message.startswith("cannot write g1: c.txt: ")
    assert outside.read_bytes() == b"precious"
    assert ctx.named("download-source-excluded") == []


# -- the staging tree ------------------------------------------------------------------------------


def test_a_symlinked_game_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / GAME).symlink_to(tmp_path / "real")
    with pytest.raises(PeerError) as caught:
        prepare_staging(tmp_path / GAME, list(ENTRIES))
    assert caught.value.code == "bad-path"
    assert caught.value.message == f"{GAME} is a symlink; refusing to write through it"
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "dangling-symlink"])
def test_a_stray_staging_entry_is_discarded(tmp_path: Path, kind: str) -> None:
    root = tmp_path / GAME
    root.mkdir()
    staging = root / STAGING_DIR
    if kind == "file":
        staging.write_text("stray")
    else:
        staging.symlink_to(tmp_path / "nowhere")
    discard_staging(root)
    assert not root.exists() and not staging.is_symlink()


@pytest.mark.parametrize("kind", ["folder", "dangling-symlink"])
def test_promote_refuses_a_local_that_appeared(tmp_path: Path, kind: str) -> None:
    root = tmp_path / GAME
    (root / STAGING_DIR).mkdir(parents=True)
    (root / STAGING_DIR / "new.txt").write_text("new")
    if kind == "folder":
        (root / LOCAL_DIR).mkdir()
    else:
        (root / LOCAL_DIR).symlink_to(tmp_path / "nowhere")
    with pytest.raises(PeerError) as caught:
        promote(root)
    assert caught.value.code == "install-failed"
    assert caught.value.message == f"{GAME}/{LOCAL_DIR} appeared during the stream"
    assert (root / STAGING_DIR / "new.txt").exists()


async def test_a_source_that_streams_nothing_touches_no_file_of_ours(games: Path) -> None:
    stdout = os.fstat(1)
    await assert_excluded(
        games, lambda _staging: [], "peer-unreachable", "the stream ended before a/b/deep.bin"
    )
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (stdout.st_dev, stdout.st_ino), "stdout left alone"


async def test_a_full_disk_aborts_the_stream_without_blaming_the_source(
    games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    ctx = FakeContext(games)
    with pytest.raises(PeerError) as caught:
        await run(ctx, games, [ctx.add("a"), ctx.add("b")])
    assert caught.value.code == "write-failed"
    assert caught.value.message == (
        f"cannot write {GAME}: a/b/deep.bin: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
    )
    assert ctx.named("download-source-excluded") == []


async def test_an_existing_empty_game_root_is_kept_as_it_is(games: Path) -> None:
    """A folder the user made for the game (its mode, or a mount point) is streamed into, not
    replaced by a new one."""
    root = games / GAME
    root.mkdir(mode=0o700)
    root.chmod(0o700)
    before = root.stat()
    ctx = FakeContext(games)
    await run(ctx, games, [ctx.add("a")])
    after = root.stat()
    assert (after.st_ino, after.st_mode & 0o777) == (before.st_ino, 0o700)
    assert staged(games) == FILES
