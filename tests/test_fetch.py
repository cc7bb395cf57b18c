"""`download_game` against an in-memory lane: the fetcher's contract, source by source.

In the style of httpx's MockTransport: the fast lane and the control link are fakes keyed by
host and peer id, so each test decides exactly what every source answers and sees every request
the fetcher made. Descriptors are the real ones (`DescriptorCache.describe` over a source root
written in tmp_path). No sockets, no threads of our own and no wall-clock sleeps: a slow source
waits on an asyncio.Event that the fake context sets when the fetcher emits a given event.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mocklane import GAME, ChunkHandler, MockContext, source

from peer.errors import PeerError
from peer.events import Event
from peer.paths import PROGRESS, SCRATCH_DIR, check_relative_path
from peer.protocol import (
    ChunkRequest,
    ErrorReply,
    GameFiles,
    GetGame,
)
from peer.transfer import disk, fetch
from peer.transfer.fetch import FetchSettings, download_game
from peer.transfer.plan import chunks_of
from peer.transfer.serve import DescriptorCache
from peer.transfer.sources import Source

# For the end game's tests: rates count from the first report and an idle source looks again
# often, so a source that never sends a byte has rate 0 as soon as it was asked.
ENDGAME = {"rate_window": 0.0, "replan_interval": 0.01}
VERSION = "20250101"
CHUNK = 8
LIMIT = 2.0  # seconds; a broken fetcher that deadlocks fails here instead of hanging the run

Behaviour = ChunkHandler  # what a source does when asked for a chunk
Predicate = Callable[[str, dict[str, Any]], bool]


# -- fakes ---------------------------------------------------------------------------------------


class FakeContext(MockContext):
    """A node as the fetcher sees it, with a look at every event as it is emitted."""

    def __init__(self) -> None:
        super().__init__(asks=GetGame)
        self.watches: list[tuple[Predicate, asyncio.Event]] = []
        self.checks: list[Callable[[], None]] = []

    def emit(self, event: Event, /, **fields: Any) -> None:
        super().emit(event, **fields)
        for check in self.checks:
            check()
        for predicate, flag in self.watches:
            if predicate(event, fields):
                flag.set()

    def when(self, predicate: Predicate) -> asyncio.Event:
        flag = asyncio.Event()
        self.watches.append((predicate, flag))
        return flag

    def add(self, name: str, root: Path | None, behaviour: Behaviour | None = None) -> Source:
        """A source called `name` offering the descriptors of `root` and serving `behaviour`."""
        added = source(name)
        if root is not None:
            self.replies[added.peer_id] = GameFiles(GAME, DescriptorCache().describe(root, CHUNK))
        self.lane.chunks[name] = behaviour or honest(root or Path("/nonexistent"))
        return added


# -- source behaviours ---------------------------------------------------------------------------


def read_range(root: Path, path: str, offset: int, length: int) -> bytes:
    with open(root / path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def honest(root: Path, piece: int = 5) -> Behaviour:
    """The asked bytes, in slices of `piece`, yielding to the loop between slices."""

    async def serve(request: ChunkRequest) -> AsyncIterator[bytes]:
        data = read_range(root, request.path, request.offset, request.length)
        assert len(data) == request.length
        for start in range(0, len(data), piece):
            await asyncio.sleep(0)
            yield data[start : start + piece]

    return serve


def liar(root: Path) -> Behaviour:
    """The right number of bytes, every one of them wrong."""

    async def serve(request: ChunkRequest) -> AsyncIterator[bytes]:
        data = read_range(root, request.path, request.offset, request.length)
        await asyncio.sleep(0)
        yield bytes(b ^ 0xFF for b in data)

    return serve


def dying(root: Path) -> Behaviour:
    """Half the chunk, then the connection drops."""

    async def serve(request: ChunkRequest) -> AsyncIterator[bytes]:
        data = read_range(root, request.path, request.offset, request.length)
        await asyncio.sleep(0)
        yield data[: len(data) // 2]
        raise PeerError("peer-unreachable", "connection reset mid-chunk")

    return serve


def gated(gate: asyncio.Event, inner: Behaviour) -> Behaviour:
    """`inner`, once `gate` is set."""

    async def serve(request: ChunkRequest) -> AsyncIterator[bytes]:
        await gate.wait()
        async for piece in inner(request):
            yield piece

    return serve


# -- helpers ---------------------------------------------------------------------------------------


def make_root(where: Path, files: dict[str, bytes], version: str = VERSION) -> Path:
    where.mkdir(parents=True)
    (where / "version.ini").write_text(version + "\n")
    for rel, data in files.items():
        (where / rel).parent.mkdir(parents=True, exist_ok=True)
        (where / rel).write_bytes(data)
    return where


def pattern(n: int, seed: int = 0) -> bytes:
    """`n` bytes in which no CHUNK-long window repeats, so a misplaced chunk shows."""
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:n]


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under `root`, by POSIX relative path."""
    found: dict[str, str] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            full = Path(dirpath) / name
            found[full.relative_to(root).as_posix()] = hashlib.sha256(full.read_bytes()).hexdigest()
    return found


def chunk_keys(root: Path) -> set[tuple[str, int]]:
    """(path, offset) of every chunk the descriptors of `root` split into."""
    keys: set[tuple[str, int]] = set()
    for f in DescriptorCache().describe(root, CHUNK):
        keys.update((f.path, i * CHUNK) for i in range(len(f.chunks)))
    return keys


def finished_at(path: str, offset: int) -> Predicate:
    def predicate(event: str, fields: dict[str, Any]) -> bool:
        return (
            event == "download-chunk-finished"
            and fields["path"] == path
            and fields["offset"] == offset
        )

    return predicate


async def download(
    ctx: FakeContext, games: Path, sources: list[Source], depth: int = 1, *, endgame: bool = False
) -> dict[str, Any]:
    tuning = ENDGAME if endgame else {}
    settings = FetchSettings(chunk_size=CHUNK, depth=depth, progress_interval=3600.0, **tuning)
    async with asyncio.timeout(LIMIT):
        return await download_game(ctx, settings, games, GAME, VERSION, sources)


async def download_fails(
    ctx: FakeContext, games: Path, sources: list[Source], depth: int = 1
) -> PeerError:
    with pytest.raises(PeerError) as err:
        await download(ctx, games, sources, depth)
    return err.value


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext()


@pytest.fixture
def games(tmp_path: Path) -> Path:
    return tmp_path / "games"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A source root: one 4-chunk file, one file with a short last chunk, a nested file."""
    return make_root(
        tmp_path / "src",
        {
            "data.bin": pattern(4 * CHUNK, seed=1),
            "more.bin": pattern(3 * CHUNK + 3, seed=2),
            "sub/dir/nested.bin": pattern(CHUNK // 2, seed=3),
        },
    )


# -- honest sources -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2])
async def test_two_honest_sources_share_the_work_and_the_copy_is_exact(
    ctx: FakeContext, games: Path, src: Path, depth: int
) -> None:
    root = games / GAME
    sentinel_seen_early: list[str] = []

    def sentinel_absent() -> None:
        if (root / "version.ini").exists():
            sentinel_seen_early.append(ctx.events[-1][0])

    a, b = ctx.add("a", src), ctx.add("b", src)
    ctx.checks.append(sentinel_absent)

    figures = await download(ctx, games, [a, b], depth)

    assert digests(root) == digests(src)  # every file, byte for byte; no .version.ini.tmp left
    assert not (root / ".version.ini.tmp").exists()
    assert (root / "version.ini").read_text() == VERSION + "\n"
    assert sentinel_seen_early == []  # no event, chunk or otherwise, saw a committed sentinel
    keys = chunk_keys(src)
    per_source = figures["bytes_per_source"]
    assert set(per_source) == {"a:4000", "b:4000"}
    assert per_source["a:4000"] > 0 and per_source["b:4000"] > 0
    total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    assert figures["bytes"] == sum(per_source.values()) == total
    assert figures["chunks"] == len(keys)
    done = ctx.named("download-chunk-finished")
    assert sorted((d["path"], d["offset"]) for d in done) == sorted(keys)  # each chunk once
    for d in done:
        assert d["game_id"] == GAME and d["peer_addr"] in per_source
        assert d["bytes"] == min(CHUNK, (src / d["path"]).stat().st_size - d["offset"])
    requested = [(r.path, r.offset) for _h, r in ctx.lane.chunk_requests]
    assert sorted(requested) == sorted(keys)  # no chunk fetched twice
    assert ctx.named("download-chunk-failed") == []
    assert ctx.named("download-source-excluded") == []
    [got] = ctx.named("got-game-files")
    assert got["rejected_sources"] == []
    assert {s["peer_id"] for s in got["sources"]} == {"id-a", "id-b"}


async def test_sentinel_is_staged_under_the_temporary_name(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    """While the download runs, the sentinel's bytes go to .version.ini.tmp, never version.ini."""
    root = games / GAME
    staged: list[bool] = []

    async def watch(request: ChunkRequest) -> AsyncIterator[bytes]:
        async for piece in honest(src)(request):
            yield piece
        staged.append((root / ".version.ini.tmp").exists() and not (root / "version.ini").exists())

    await download(ctx, games, [ctx.add("a", src, watch)])

    assert staged and all(staged)
    assert digests(root) == digests(src)


# -- sources that misbehave -----------------------------------------------------------------------


async def test_lying_source_is_excluded_and_the_honest_one_finishes(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    good, bad = ctx.add("good", src), ctx.add("bad", src, liar(src))

    figures = await download(ctx, games, [good, bad])

    assert digests(games / GAME) == digests(src)
    [excluded] = ctx.named("download-source-excluded")
    assert excluded["peer_id"] == "id-bad" and excluded["code"] == "bad-chunk"
    assert len(ctx.lane.asked("bad")) == 1  # never asked again after the first lie
    assert [f["code"] for f in ctx.named("download-chunk-failed")] == ["bad-chunk"]
    assert figures["bytes_per_source"]["bad:4000"] == 0
    assert figures["bytes_per_source"]["good:4000"] == figures["bytes"]


async def test_liar_with_two_lanes_is_excluded_once(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    good, bad = ctx.add("good", src), ctx.add("bad", src, liar(src))

    await download(ctx, games, [good, bad], depth=2)

    assert digests(games / GAME) == digests(src)
    assert [e["peer_id"] for e in ctx.named("download-source-excluded")] == ["id-bad"]


async def test_dying_source_is_excluded_and_the_other_finishes(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    good, dead = ctx.add("good", src), ctx.add("dead", src, dying(src))

    figures = await download(ctx, games, [dead, good])

    assert digests(games / GAME) == digests(src)
    [excluded] = ctx.named("download-source-excluded")
    assert excluded["peer_id"] == "id-dead" and excluded["code"] == "peer-unreachable"
    assert len(ctx.lane.asked("dead")) == 1
    assert figures["bytes_per_source"] == {"dead:4000": 0, "good:4000": figures["bytes"]}


async def test_fast_source_steals_the_queued_chunks_of_a_slow_one(
    ctx: FakeContext, tmp_path: Path, games: Path
) -> None:
    src = make_root(tmp_path / "src", {"data.bin": pattern(6 * CHUNK)}, version="v" * CHUNK)
    keys = chunk_keys(src)
    # The slow source answers its first request only once every other chunk is in: if the fast
    # source did not steal its queue, nothing would ever set the gate.
    gate = ctx.when(lambda event, _f: len(ctx.named("download-chunk-finished")) == len(keys) - 1)
    fast, slow = ctx.add("fast", src), ctx.add("slow", src, gated(gate, honest(src)))

    figures = await download(ctx, games, [fast, slow])

    assert digests(games / GAME) == digests(src)
    [slow_asked] = ctx.lane.asked("slow")  # its first chunk only; the rest was taken from it
    assert len(ctx.lane.asked("fast")) == len(keys) - 1
    assert figures["bytes_per_source"] == {
        "fast:4000": figures["bytes"] - CHUNK,
        "slow:4000": CHUNK,
    }
    last = ctx.named("download-chunk-finished")[-1]
    assert (last["peer_id"], last["path"], last["offset"]) == ("id-slow", *slow_asked[:2])
    requested = [(r.path, r.offset) for _h, r in ctx.lane.chunk_requests]
    assert sorted(requested) == sorted(keys)  # a stolen chunk is never fetched twice
    assert ctx.named("download-source-excluded") == []


@pytest.mark.parametrize("extra_slice", [False, True], ids=["one-long-slice", "extra-slice"])
async def test_source_sending_more_than_asked_never_writes_past_its_chunk(
    ctx: FakeContext, tmp_path: Path, games: Path, extra_slice: bool
) -> None:
    data = pattern(4 * CHUNK)
    src = make_root(tmp_path / "src", {"data.bin": data})

    def overflowing(request: ChunkRequest) -> AsyncIterator[bytes]:
        # The plan gives the honest source data.bin@0 and @16 and this one @8 (first): wait until
        # the chunk right after ours is written, then send it one wrong byte too many.
        after = ctx.when(finished_at(request.path, request.offset + request.length))

        async def serve() -> AsyncIterator[bytes]:
            await after.wait()
            body = read_range(src, request.path, request.offset, request.length)
            (next_byte,) = read_range(src, request.path, request.offset + request.length, 1)
            wrong = bytes([next_byte ^ 0xFF])
            if extra_slice:
                yield body
                yield wrong
            else:
                yield body + wrong

        return serve()

    good, hostile = ctx.add("good", src), ctx.add("hostile", src, overflowing)

    await download(ctx, games, [good, hostile])

    assert ctx.lane.asked("hostile") == [("data.bin", CHUNK, CHUNK)]
    [excluded] = ctx.named("download-source-excluded")
    assert excluded["peer_id"] == "id-hostile" and excluded["code"] == "bad-chunk"
    written = (games / GAME / "data.bin").read_bytes()
    assert written[2 * CHUNK : 3 * CHUNK] == data[2 * CHUNK : 3 * CHUNK]
    assert written == data
    assert digests(games / GAME) == digests(src)


async def test_short_source_ending_early_is_a_bad_chunk(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    async def short(request: ChunkRequest) -> AsyncIterator[bytes]:
        data = read_range(src, request.path, request.offset, request.length)
        yield data[:-1]

    good, bad = ctx.add("good", src), ctx.add("short", src, short)

    await download(ctx, games, [bad, good])

    assert digests(games / GAME) == digests(src)
    [excluded] = ctx.named("download-source-excluded")
    assert excluded["peer_id"] == "id-short" and excluded["code"] == "bad-chunk"


async def test_every_source_failing_is_sources_lost_and_nothing_looks_complete(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    # An earlier, committed copy: its sentinel must go before the first byte is fetched.
    make_root(games / GAME, {"data.bin": b"old"}, version="19990101")
    lying, dead = ctx.add("lying", src, liar(src)), ctx.add("dead", src, dying(src))

    err = await download_fails(ctx, games, [lying, dead])

    assert err.code == "sources-lost"
    assert not (games / GAME / "version.ini").exists()
    excluded = {e["peer_id"]: e["code"] for e in ctx.named("download-source-excluded")}
    assert excluded == {"id-lying": "bad-chunk", "id-dead": "peer-unreachable"}
    assert len(ctx.lane.chunk_requests) == 2


async def test_single_dead_source_is_sources_lost(ctx: FakeContext, games: Path, src: Path) -> None:
    err = await download_fails(ctx, games, [ctx.add("dead", src, dying(src))], depth=2)

    assert err.code == "sources-lost"
    assert not (games / GAME / "version.ini").exists()


# -- what arrives ---------------------------------------------------------------------------------


async def test_chunk_boundaries_and_empty_files_arrive_intact(
    ctx: FakeContext, tmp_path: Path, games: Path
) -> None:
    src = make_root(
        tmp_path / "src",
        {
            "exact.bin": pattern(3 * CHUNK, seed=1),
            "plus-one.bin": pattern(3 * CHUNK + 1, seed=2),
            "short.bin": pattern(1, seed=3),
            "empty.bin": b"",
            "deep/empty.bin": b"",
        },
    )
    a, b = ctx.add("a", src), ctx.add("b", src)

    figures = await download(ctx, games, [a, b])

    assert digests(games / GAME) == digests(src)
    for rel in ("exact.bin", "plus-one.bin", "short.bin", "empty.bin", "deep/empty.bin"):
        assert (games / GAME / rel).stat().st_size == (src / rel).stat().st_size
    asked = sorted((r.path, r.offset, r.length) for _h, r in ctx.lane.chunk_requests)
    assert [x for x in asked if x[0] == "exact.bin"] == [
        ("exact.bin", 0, CHUNK),
        ("exact.bin", CHUNK, CHUNK),
        ("exact.bin", 2 * CHUNK, CHUNK),
    ]
    assert [x for x in asked if x[0] == "plus-one.bin"][-1] == ("plus-one.bin", 3 * CHUNK, 1)
    assert ("empty.bin", 0, 0) in asked and ("deep/empty.bin", 0, 0) in asked
    assert figures["chunks"] == len(asked) == len(chunk_keys(src))


async def test_leftovers_of_a_larger_earlier_file_are_cut_off(
    ctx: FakeContext, tmp_path: Path, games: Path
) -> None:
    new = pattern(2 * CHUNK + 5)
    src = make_root(tmp_path / "src", {"data.bin": new, "gone-empty.bin": b""})
    old_root = make_root(
        games / GAME,
        {"data.bin": b"Z" * 100, "gone-empty.bin": b"stale bytes"},
        version="19990101",
    )
    (old_root / ".version.ini.tmp").write_text("half-written\n" * 10)

    await download(ctx, games, [ctx.add("a", src)])

    assert (games / GAME / "data.bin").read_bytes() == new
    assert (games / GAME / "gone-empty.bin").read_bytes() == b""
    assert (games / GAME / "version.ini").read_text() == VERSION + "\n"
    assert digests(games / GAME) == digests(src)


# -- which sources are trusted --------------------------------------------------------------------


async def test_odd_source_is_outvoted_and_never_asked_for_a_chunk(
    ctx: FakeContext, tmp_path: Path, games: Path, src: Path
) -> None:
    other = make_root(tmp_path / "other", {"data.bin": pattern(4 * CHUNK, seed=99)})
    a, b = ctx.add("a", src), ctx.add("b", src)
    odd = ctx.add("odd", other)

    figures = await download(ctx, games, [odd, a, b])

    [got] = ctx.named("got-game-files")
    assert got["rejected_sources"] == ["id-odd"]
    assert {s["peer_id"] for s in got["sources"]} == {"id-a", "id-b"}
    assert ctx.lane.asked("odd") == []
    assert "odd:4000" not in figures["bytes_per_source"]
    assert digests(games / GAME) == digests(src)


async def test_outvoted_minority_never_serves_chunks(
    ctx: FakeContext, tmp_path: Path, games: Path, src: Path
) -> None:
    """3 against 2: both of the two are rejected, and the lane never hears of them."""
    other = make_root(tmp_path / "other", {"data.bin": pattern(4 * CHUNK, seed=99)})
    winners = [ctx.add(n, src) for n in ("w1", "w2", "w3")]
    losers = [ctx.add(n, other, honest(src)) for n in ("l1", "l2")]

    figures = await download(ctx, games, [losers[0], *winners, losers[1]])

    [got] = ctx.named("got-game-files")
    assert got["rejected_sources"] == ["id-l1", "id-l2"]
    assert {h for h, _r in ctx.lane.chunk_requests} <= {"w1", "w2", "w3"}
    assert set(figures["bytes_per_source"]) == {"w1:4000", "w2:4000", "w3:4000"}
    assert [s["peer_addr"] for s in got["sources"]] == ["w1:4000", "w2:4000", "w3:4000"]
    assert digests(games / GAME) == digests(src)


@pytest.mark.parametrize(
    "variants", [(1, 1, 1), (2, 2), (1, 1)], ids=["three-way", "two-two", "one-one"]
)
async def test_tie_for_first_place_is_ambiguous_and_fetches_nothing(
    ctx: FakeContext, tmp_path: Path, games: Path, variants: tuple[int, ...]
) -> None:
    sources = []
    for v, count in enumerate(variants):
        root = make_root(tmp_path / f"v{v}", {"data.bin": pattern(4 * CHUNK, seed=v)})
        sources += [ctx.add(f"s{v}-{i}", root) for i in range(count)]

    err = await download_fails(ctx, games, sources)

    assert err.code == "ambiguous-metadata"
    assert ctx.lane.chunk_requests == []
    assert ctx.named("got-game-files") == []
    assert not (games / GAME).exists()


async def test_reply_for_another_game_skips_that_source(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    a, b = ctx.add("a", src), ctx.add("b", src)
    wrong = ctx.add("wrong", None, honest(src))
    ctx.replies[wrong.peer_id] = GameFiles("other-game", DescriptorCache().describe(src, CHUNK))

    figures = await download(ctx, games, [wrong, a, b])

    [skipped] = ctx.named("download-source-skipped")
    assert skipped["peer_id"] == "id-wrong" and skipped["code"] == "bad-message"
    assert ctx.lane.asked("wrong") == []
    assert "wrong:4000" not in figures["bytes_per_source"]
    [got] = ctx.named("got-game-files")
    assert {s["peer_id"] for s in got["sources"]} == {"id-a", "id-b"}
    assert digests(games / GAME) == digests(src)


async def test_refusing_or_unreachable_control_link_skips_that_source(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    a = ctx.add("a", src)
    refusing, gone = ctx.add("refusing", None), ctx.add("gone", None)
    ctx.replies[refusing.peer_id] = ErrorReply("not-servable", "busy installing")
    ctx.replies[gone.peer_id] = PeerError("peer-unreachable", "link closed")

    await download(ctx, games, [refusing, a, gone])

    skipped = {s["peer_id"]: s["code"] for s in ctx.named("download-source-skipped")}
    assert skipped == {"id-refusing": "not-servable", "id-gone": "peer-unreachable"}
    assert {h for h, _r in ctx.lane.chunk_requests} == {"a"}
    assert digests(games / GAME) == digests(src)


async def test_every_source_skipped_is_no_peers(ctx: FakeContext, games: Path) -> None:
    gone = ctx.add("gone", None)
    ctx.replies[gone.peer_id] = PeerError("peer-unreachable", "link closed")

    err = await download_fails(ctx, games, [gone])

    assert err.code == "no-peers"
    assert not (games / GAME).exists()


async def test_file_list_without_a_sentinel_is_bad_metadata(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    a = ctx.add("a", src)
    files = DescriptorCache().describe(src, CHUNK)
    ctx.replies[a.peer_id] = GameFiles(GAME, tuple(f for f in files if f.path != "version.ini"))

    err = await download_fails(ctx, games, [a])

    assert err.code == "bad-metadata"
    assert ctx.lane.chunk_requests == []


# -- our own disk ----------------------------------------------------------------------------------


def disk_fills_on_write(monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    """The `nth` pwrite of the download fails with ENOSPC (a disk that filled up)."""
    real_pwrite = os.pwrite
    calls = 0

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_disk)


async def test_local_write_error_is_write_failed_and_blames_no_source(
    ctx: FakeContext, games: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_fills_on_write(monkeypatch, 2)
    a, b = ctx.add("a", src), ctx.add("b", src)

    err = await download_fails(ctx, games, [a, b])

    assert err.code == "write-failed"
    assert "No space left" in err.message
    assert not (games / GAME / "version.ini").exists()
    assert ctx.named("download-source-excluded") == []  # not the sources' fault


async def test_short_local_write_never_commits_a_corrupt_copy(
    ctx: FakeContext, games: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite
    short: list[int] = []

    def short_once(fd: int, data: bytes, offset: int) -> int:
        if not short and len(data) > 1:
            short.append(offset)
            return real_pwrite(fd, data[:1], offset)  # the kernel took only the first byte
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", short_once)
    a = ctx.add("a", src)

    try:
        await download(ctx, games, [a])
    except PeerError as exc:
        assert exc.code == "write-failed"
        assert not (games / GAME / "version.ini").exists()
    else:
        assert digests(games / GAME) == digests(src), "committed bytes that were never written"
    assert short


# -- what the events and refusals say --------------------------------------------------------------


async def test_the_events_of_a_download_describe_it(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    a, b = ctx.add("a", src), ctx.add("b", src)

    await download(ctx, games, [a, b])

    files = DescriptorCache().describe(src, CHUNK)
    total = sum(f.size for f in files)
    assert ctx.named("got-game-files") == [
        {
            "game_id": GAME,
            "version": VERSION,
            "files": [{"path": f.path, "size": f.size} for f in files],
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
            "files": len(files),
            "chunks": len(chunk_keys(src)),
            "sources": ["a:4000", "b:4000"],
            "resumed_chunks": 0,
            "resumed_bytes": 0,
        }
    ]
    names = [event for event, _fields in ctx.events]
    assert names.index("got-game-files") < names.index("download-begin")
    assert names.index("download-begin") < names.index("download-chunk-finished")


async def test_progress_reports_the_bytes_so_far_and_a_rate(
    ctx: FakeContext, tmp_path: Path, games: Path
) -> None:
    src = make_root(tmp_path / "src", {"data.bin": pattern(6 * CHUNK)}, version="v" * CHUNK)
    total = sum(f.stat().st_size for f in src.iterdir())
    # The slow source's one chunk waits for the first progress report: by then every other
    # chunk is in, so the report's figures are known exactly.
    reported = ctx.when(lambda event, _f: event == "download-progress")
    fast, slow = ctx.add("fast", src), ctx.add("slow", src, gated(reported, honest(src)))
    settings = FetchSettings(chunk_size=CHUNK, depth=1, progress_interval=0.3)  # chunks fsync

    async with asyncio.timeout(LIMIT):
        await download_game(ctx, settings, games, GAME, VERSION, [fast, slow])

    first = ctx.named("download-progress")[0]
    rate = first.pop("bytes_per_second")
    assert first == {"game_id": GAME, "downloaded_bytes": total - CHUNK, "total_bytes": total}
    # About 0.3 s in: the rate is bytes per second, above the bytes so far.
    assert isinstance(rate, int) and rate > first["downloaded_bytes"]
    assert digests(games / GAME) == digests(src)


async def test_a_lie_is_reported_per_chunk_and_per_source(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    good, bad = ctx.add("good", src), ctx.add("bad", src, liar(src))

    await download(ctx, games, [good, bad])

    [(_host, asked)] = [(h, r) for h, r in ctx.lane.chunk_requests if h == "bad"]
    reason = f"{asked.path}@{asked.offset}: bytes do not match the validated BLAKE3"
    who = {"game_id": GAME, "peer_id": "id-bad", "peer_addr": "bad:4000"}
    assert ctx.named("download-chunk-failed") == [
        {**who, "path": asked.path, "offset": asked.offset, "code": "bad-chunk", "reason": reason}
    ]
    assert ctx.named("download-source-excluded") == [{**who, "code": "bad-chunk", "reason": reason}]


async def test_more_bytes_than_asked_is_named_as_such(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    async def one_more(request: ChunkRequest) -> AsyncIterator[bytes]:
        yield read_range(src, request.path, request.offset, request.length) + b"!"

    good, bad = ctx.add("good", src), ctx.add("bad", src, one_more)

    await download(ctx, games, [bad, good])

    [excluded] = ctx.named("download-source-excluded")
    assert (excluded["code"], excluded["reason"]) == (
        "bad-chunk",
        "source sent more bytes than asked",
    )
    assert digests(games / GAME) == digests(src)


async def test_sources_lost_says_how_many_chunks_were_left(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    served: list[int] = []

    async def two_then_dead(request: ChunkRequest) -> AsyncIterator[bytes]:
        if len(served) == 2:
            raise PeerError("peer-unreachable", "gone")
        served.append(request.offset)
        yield read_range(src, request.path, request.offset, request.length)

    err = await download_fails(ctx, games, [ctx.add("a", src, two_then_dead)])

    left = len(chunk_keys(src)) - 2
    assert err.code == "sources-lost"
    assert err.message == f"download of {GAME} lost every source with {left} chunk(s) left"


async def test_a_source_left_idle_takes_over_the_work_of_one_that_dies(
    ctx: FakeContext, tmp_path: Path, games: Path
) -> None:
    """The fast source runs out of work and waits; the slow one then dies holding a chunk,
    which the waiting source must wake up for and fetch."""
    src = make_root(tmp_path / "src", {"data.bin": pattern(6 * CHUNK)}, version="v" * CHUNK)
    keys = chunk_keys(src)
    gate = ctx.when(lambda event, _f: len(ctx.named("download-chunk-finished")) == len(keys) - 1)
    fast, slow = ctx.add("fast", src), ctx.add("slow", src, gated(gate, dying(src)))

    figures = await download(ctx, games, [fast, slow])

    assert digests(games / GAME) == digests(src)
    assert figures["bytes_per_source"] == {"fast:4000": figures["bytes"], "slow:4000": 0}
    assert [e["peer_id"] for e in ctx.named("download-source-excluded")] == ["id-slow"]


async def test_refusals_before_the_download_name_the_game_and_the_sources(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    gone, refusing = ctx.add("gone", None), ctx.add("refusing", None)
    ctx.replies[gone.peer_id] = PeerError("peer-unreachable", "link closed")
    ctx.replies[refusing.peer_id] = ErrorReply("not-servable", "busy installing")

    err = await download_fails(ctx, games, [gone, refusing])

    assert err.code == "no-peers"
    assert err.message == (
        f"no source could offer {GAME}: gone:4000: peer-unreachable: link closed; "
        "refusing:4000: not-servable: busy installing"
    )
    assert ctx.named("download-source-skipped")[0] == {
        "game_id": GAME,
        "peer_id": "id-gone",
        "peer_addr": "gone:4000",
        "code": "peer-unreachable",
        "reason": "link closed",
    }


async def test_a_reply_for_another_game_says_which(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    wrong, a = ctx.add("wrong", None), ctx.add("a", src)
    ctx.replies[wrong.peer_id] = GameFiles("other-game", DescriptorCache().describe(src, CHUNK))

    await download(ctx, games, [wrong, a])

    [skipped] = ctx.named("download-source-skipped")
    assert skipped["reason"] == f"asked for {GAME}, got other-game"


async def test_a_tie_and_a_missing_sentinel_name_the_game(
    ctx: FakeContext, tmp_path: Path, games: Path, src: Path
) -> None:
    other = make_root(tmp_path / "other", {"data.bin": pattern(4 * CHUNK, seed=99)})
    a, b = ctx.add("a", src), ctx.add("b", other)
    tie = await download_fails(ctx, games, [a, b])
    assert tie.code == "ambiguous-metadata"
    assert tie.message.startswith(f"sources disagree on the files of {GAME} ")

    files = DescriptorCache().describe(src, CHUNK)
    ctx.replies["id-b"] = GameFiles(GAME, tuple(f for f in files if f.path != "version.ini"))
    missing = await download_fails(ctx, games, [b])
    assert missing.code == "bad-metadata"
    assert missing.message == f"the sources' file list of {GAME} has no version.ini"


# -- a game root we cannot or must not write ---------------------------------------------------


async def test_a_symlinked_game_root_is_refused(
    ctx: FakeContext, tmp_path: Path, games: Path, src: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    games.mkdir()
    (games / GAME).symlink_to(tmp_path / "elsewhere")

    err = await download_fails(ctx, games, [ctx.add("a", src)])

    assert (err.code, err.message) == (
        "bad-path",
        f"{GAME} is a symlink; refusing to write through it",
    )
    assert list((tmp_path / "elsewhere").iterdir()) == []


async def test_a_games_dir_that_is_a_file_is_write_failed(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    games.write_text("not a folder")

    err = await download_fails(ctx, games, [ctx.add("a", src)])

    assert err.code == "write-failed"
    assert err.message.startswith(f"cannot prepare {GAME}: ")
    assert ctx.lane.chunk_requests == []


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_failed_download_closes_every_file_it_opened(
    ctx: FakeContext, games: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_fills_on_write(monkeypatch, 3)
    before = open_fds()

    err = await download_fails(ctx, games, [ctx.add("a", src), ctx.add("b", src)], depth=2)

    assert err.code == "write-failed"
    assert open_fds() <= before, "a file of the download was left open"


def test_commit_syncs_every_file_then_publishes_the_sentinel(
    tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = DescriptorCache().describe(src, CHUNK)
    root = tmp_path / "root"
    disk.prepare_root(root, files)
    (root / ".version.ini.tmp").write_text(VERSION + "\n")
    synced: list[str] = []

    def recording(path: Path) -> None:
        synced.append(os.path.relpath(path, root))
        if path != root:  # the folder is synced last, to make the rename itself durable
            assert not (root / "version.ini").exists(), "a file synced after the commit point"

    monkeypatch.setattr(disk, "fsync_path", recording)
    disk.commit_root(root, files)

    assert sorted(synced[:-2]) == sorted(f.path for f in files if f.path != "version.ini")
    assert synced[-2:] == [".version.ini.tmp", "."]
    assert (root / "version.ini").read_text() == VERSION + "\n"
    assert not (root / ".version.ini.tmp").exists()


def test_preparing_a_symlinked_root_is_refused_and_writes_nothing(
    tmp_path: Path, src: Path
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / GAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PeerError) as err:
        disk.prepare_root(tmp_path / GAME, DescriptorCache().describe(src, CHUNK))
    assert (err.value.code, err.value.message) == (
        "bad-path",
        f"{GAME} is a symlink; refusing to write through it",
    )
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_preparing_a_root_makes_a_missing_games_dir(tmp_path: Path, src: Path) -> None:
    files = DescriptorCache().describe(src, CHUNK)
    root = tmp_path / "not" / "yet" / GAME
    disk.prepare_root(root, files)
    sizes = {f.path: disk.target_path(root, f.path).stat().st_size for f in files}
    assert sizes == {f.path: f.size for f in files}


@pytest.mark.parametrize("kind", ["link", "fifo", "socket"])
def test_a_wanted_file_of_another_kind_is_replaced_never_written_through(
    tmp_path: Path, src: Path, kind: str
) -> None:
    """A link is not followed and a FIFO does not hang the download (issue 17 class 6): the
    root is rewritten to hold exactly the validated files, as regular files."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious")
    root = tmp_path / GAME
    root.mkdir()
    there = root / "data.bin"
    if kind == "link":
        there.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(there)
    else:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(there))
    files = DescriptorCache().describe(src, CHUNK)
    disk.prepare_root(root, files)
    assert outside.read_bytes() == b"precious"
    assert there.is_file() and not there.is_symlink()
    assert there.stat().st_size == next(f.size for f in files if f.path == "data.bin")
    assert outside.read_bytes() == b"precious"


def test_a_path_through_a_linked_folder_would_leave_the_root(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    root = tmp_path / GAME
    root.mkdir()
    (root / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PeerError) as err:
        disk.target_path(root, "sub/x.bin")
    assert (err.value.code, err.value.message) == (
        "bad-path",
        "path 'sub/x.bin' would leave the game root",
    )
    assert disk.target_path(root, "version.ini") == root / ".version.ini.tmp"


# -- resuming after a crash -----------------------------------------------------------------------


def failing_from(root: Path, path: str, offset: int) -> Behaviour:
    """Honest up to chunk (`path`, `offset`); from there on the connection drops."""

    async def serve(request: ChunkRequest) -> AsyncIterator[bytes]:
        if (request.path, request.offset) >= (path, offset):
            raise PeerError("peer-unreachable", "gone")
        async for piece in honest(root)(request):
            yield piece

    return serve


def record_names_only_verified_chunks(root: Path, src: Path) -> Callable[[], None]:
    """A check for every event (a kill point): each chunk the on-disk record names hashes
    right on disk at that moment."""
    chunks = chunks_of(DescriptorCache().describe(src, CHUNK))

    def check() -> None:
        record = disk.load_progress(root)
        if record is not None:
            named = [chunks[i] for i in record.verified]
            assert all(disk.verified_on_disk(root, named)), record

    return check


async def test_a_second_attempt_fetches_only_what_the_first_did_not_verify(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    root = games / GAME
    ctx.checks.append(record_names_only_verified_chunks(root, src))
    first = await download_fails(ctx, games, [ctx.add("a", src, failing_from(src, "data.bin", 16))])
    assert first.code == "sources-lost"
    assert not (root / "version.ini").exists()
    kept = {(d["path"], d["offset"]) for d in ctx.named("download-chunk-finished")}
    assert kept == {("data.bin", 0), ("data.bin", 8)}

    again = FakeContext()
    again.checks.append(record_names_only_verified_chunks(root, src))
    await download(again, games, [again.add("b", src)])

    asked = {(r.path, r.offset) for _h, r in again.lane.chunk_requests}
    assert asked == chunk_keys(src) - kept
    assert digests(root) == digests(src)
    [begin] = again.named("download-begin")
    assert (begin["resumed_chunks"], begin["resumed_bytes"]) == (2, 2 * CHUNK)
    assert not (root / PROGRESS).exists(), "a finished download leaves no record"


async def test_a_recorded_chunk_whose_bytes_changed_on_disk_is_fetched_again(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    root = games / GAME
    await download_fails(ctx, games, [ctx.add("a", src, failing_from(src, "data.bin", 16))])
    with open(root / "data.bin", "r+b") as f:  # one flipped byte in the recorded chunk @8
        f.seek(9)
        byte = f.read(1)
        f.seek(9)
        f.write(bytes([byte[0] ^ 1]))

    again = FakeContext()
    await download(again, games, [again.add("b", src)])

    asked = {(r.path, r.offset) for _h, r in again.lane.chunk_requests}
    assert asked == chunk_keys(src) - {("data.bin", 0)}
    assert digests(root) == digests(src)


@pytest.mark.parametrize(
    "change",
    [
        {"data.bin": pattern(4 * CHUNK, seed=9)},  # same sizes, other bytes
        {"extra.bin": b"x"},  # another file set
    ],
)
async def test_a_record_made_for_other_descriptors_is_discarded(
    ctx: FakeContext, games: Path, src: Path, tmp_path: Path, change: dict[str, bytes]
) -> None:
    await download_fails(ctx, games, [ctx.add("a", src, failing_from(src, "data.bin", 16))])
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    del files["version.ini"]
    newer = make_root(tmp_path / "newer", {**files, **change})

    again = FakeContext()
    await download(again, games, [again.add("b", newer)])

    asked = {(r.path, r.offset) for _h, r in again.lane.chunk_requests}
    assert asked == chunk_keys(newer), "nothing of the old record was trusted"
    assert digests(games / GAME) == digests(newer)
    assert again.named("download-begin")[0]["resumed_chunks"] == 0


async def test_a_chunk_is_recorded_only_once_synced(
    ctx: FakeContext, games: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = games / GAME
    synced: list[int] = []
    seen: list[tuple[int, int]] = []
    real_save = disk.save_progress

    def save(where: Path, progress: Any) -> None:
        seen.append((len(progress.verified), len(synced)))
        real_save(where, progress)

    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd))
    monkeypatch.setattr(fetch, "save_progress", save)
    monkeypatch.setattr(disk, "save_progress", save)
    await download(ctx, games, [ctx.add("a", src)])

    assert seen[0] == (0, 0)  # the fresh record, before any chunk
    assert all(n <= fsyncs for n, fsyncs in seen), seen  # never more chunks than syncs
    assert len(seen) == 1 + len(chunk_keys(src))
    assert not (root / PROGRESS).exists()


async def test_a_chunk_that_cannot_be_synced_is_write_failed_naming_its_file(
    ctx: FakeContext, games: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing)
    err = await download_fails(ctx, games, [ctx.add("a", src)])

    assert err.code == "write-failed"
    assert "data.bin" in err.message and os.strerror(errno.EIO) in err.message
    assert ctx.named("download-source-excluded") == [], "our disk, not the source's fault"


# -- the end game ---------------------------------------------------------------------------------


class Holder:
    """A source whose first chunk waits for `gate` (None: for ever), then is `then`'s; a
    cancel takes a few turns of the loop to stop (a lane thread finishing its slice), and
    `stopped` says whether that is over."""

    def __init__(
        self, root: Path, gate: asyncio.Event | None = None, then: Behaviour | None = None
    ):
        self.root, self.gate, self.then = root, gate or asyncio.Event(), then or honest(root)
        self.first: tuple[str, int] | None = None
        self.cancelled = self.stopped = False

    def __call__(self, request: ChunkRequest) -> AsyncIterator[bytes]:
        if self.first is not None:
            return honest(self.root)(request)
        self.first = (request.path, request.offset)
        return self.hold(request)

    async def hold(self, request: ChunkRequest) -> AsyncIterator[bytes]:
        try:
            await self.gate.wait()
            async for piece in self.then(request):
                yield piece
        except asyncio.CancelledError:
            self.cancelled = True
            for _ in range(5):
                await asyncio.sleep(0)
            raise
        finally:
            self.stopped = True


def lies_on(root: Path, holder: Holder) -> Behaviour:
    """Honest, except for the chunk `holder` holds: that one comes back with every byte wrong."""

    def serve(request: ChunkRequest) -> AsyncIterator[bytes]:
        if (request.path, request.offset) == holder.first:
            return liar(root)(request)
        return honest(root)(request)

    return serve


def region(root: Path, path: str, offset: int) -> bytes:
    return read_range(root, path, offset, CHUNK)


async def test_a_fast_idle_source_finishes_the_chunk_a_slow_source_holds(
    ctx: FakeContext, games: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = games / GAME
    slow = Holder(src)  # never sends a byte of its first chunk
    copied_after_stop: list[bool] = []
    real_copy = disk.copy_verified

    def copy(scratch: int, target: int, chunk: Any) -> None:
        copied_after_stop.append(slow.stopped)
        real_copy(scratch, target, chunk)

    monkeypatch.setattr(fetch, "copy_verified", copy)
    ctx.checks.append(record_names_only_verified_chunks(root, src))
    fast_source, slow_source = ctx.add("fast", src), ctx.add("slow", src, slow)

    figures = await download(ctx, games, [fast_source, slow_source], endgame=True)

    assert digests(root) == digests(src)
    assert slow.first is not None and ctx.lane.asked("slow") == [(*slow.first, CHUNK)]
    [dup] = ctx.named("download-chunk-duplicated")
    assert (dup["peer_id"], dup["path"], dup["offset"]) == ("id-fast", *slow.first)
    assert (dup["holder_id"], dup["holder_addr"], dup["holder_bytes_per_s"]) == (
        "id-slow",
        "slow:4000",
        0,
    )
    held = [
        d for d in ctx.named("download-chunk-finished") if (d["path"], d["offset"]) == slow.first
    ]
    assert [(d["peer_id"], d["duplicate"]) for d in held] == [("id-fast", True)]
    others = [d for d in ctx.named("download-chunk-finished") if d not in held]
    assert others and not any(d["duplicate"] for d in others)
    assert slow.cancelled and copied_after_stop == [True], "the holder stopped before the copy"
    assert figures["bytes_per_source"] == {"fast:4000": figures["bytes"], "slow:4000": 0}
    assert ctx.named("download-chunk-failed") == [] and ctx.named("download-source-excluded") == []
    assert not (root / SCRATCH_DIR).exists()
    assert not (root / PROGRESS).exists()


async def test_a_lying_duplicate_never_touches_the_chunk_in_place(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    root = games / GAME
    failed = ctx.when(lambda event, _f: event == "download-chunk-failed")
    slow = Holder(src, gate=failed)  # honest, but only once the duplicate has been refused
    trashed: list[str] = []

    def held_region_is_never_the_liars() -> None:
        if slow.first is None or not (root / slow.first[0]).exists():
            return
        good, now = region(src, *slow.first), region(root, *slow.first)
        if any(b not in (0, g) for b, g in zip(now, good, strict=True)):
            trashed.append(ctx.events[-1][0])

    ctx.checks.append(held_region_is_never_the_liars)
    ctx.checks.append(record_names_only_verified_chunks(root, src))
    lying_source, slow_source = (
        ctx.add("lying", src, lies_on(src, slow)),
        ctx.add("slow", src, slow),
    )

    figures = await download(ctx, games, [lying_source, slow_source], endgame=True)

    assert trashed == [], f"the liar's bytes reached the game file (seen at {trashed})"
    assert digests(root) == digests(src)
    assert slow.first is not None
    [dup] = ctx.named("download-chunk-duplicated")
    assert (dup["peer_id"], dup["path"], dup["offset"]) == ("id-lying", *slow.first)
    [failure] = ctx.named("download-chunk-failed")
    assert (failure["peer_id"], failure["code"]) == ("id-lying", "bad-chunk")
    [excluded] = ctx.named("download-source-excluded")
    assert excluded["peer_id"] == "id-lying", "a lying duplicate is a lying source"
    held = [
        d for d in ctx.named("download-chunk-finished") if (d["path"], d["offset"]) == slow.first
    ]
    assert [(d["peer_id"], d["duplicate"]) for d in held] == [("id-slow", False)]
    assert figures["bytes_per_source"]["slow:4000"] == CHUNK
    assert not (root / SCRATCH_DIR).exists()


async def test_the_holder_finishing_first_cancels_the_duplicate(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    root = games / GAME
    duplicated = ctx.when(lambda event, _f: event == "download-chunk-duplicated")
    slow = Holder(src, gate=duplicated)
    copy = Holder(src)  # the duplicate's request never sends a byte
    scratch_left: list[list[str]] = []

    def fast(request: ChunkRequest) -> AsyncIterator[bytes]:
        if (request.path, request.offset) == slow.first:
            return copy(request)
        return honest(src)(request)

    def scratch_gone_when_the_holder_wins() -> None:
        event, fields = ctx.events[-1]
        if event == "download-chunk-finished" and (fields["path"], fields["offset"]) == slow.first:
            where = root / SCRATCH_DIR
            scratch_left.append(sorted(os.listdir(where)) if where.exists() else [])

    ctx.checks.append(scratch_gone_when_the_holder_wins)
    fast_source, slow_source = ctx.add("fast", src, fast), ctx.add("slow", src, slow)

    figures = await download(ctx, games, [fast_source, slow_source], endgame=True)

    assert digests(root) == digests(src)
    assert slow.first is not None and copy.first == slow.first
    held = [
        d for d in ctx.named("download-chunk-finished") if (d["path"], d["offset"]) == slow.first
    ]
    assert [(d["peer_id"], d["duplicate"]) for d in held] == [("id-slow", False)]
    assert copy.cancelled and copy.stopped, "the losing duplicate was cancelled"
    assert scratch_left == [[]], "the duplicate's scratch file outlived its loss"
    assert figures["bytes_per_source"]["slow:4000"] == CHUNK
    assert ctx.named("download-chunk-failed") == [] and ctx.named("download-source-excluded") == []


async def test_a_holder_that_dies_leaves_its_chunk_to_the_duplicate(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    root = games / GAME
    duplicated = ctx.when(lambda event, _f: event == "download-chunk-duplicated")
    slow = Holder(src, gate=duplicated, then=dying(src))
    copy_gate = ctx.when(lambda event, _f: event == "download-chunk-failed")
    copy = Holder(src, gate=copy_gate)  # the duplicate goes on once the holder has failed

    def fast(request: ChunkRequest) -> AsyncIterator[bytes]:
        if (request.path, request.offset) == slow.first:
            return copy(request)
        return honest(src)(request)

    ctx.checks.append(record_names_only_verified_chunks(root, src))
    fast_source, slow_source = ctx.add("fast", src, fast), ctx.add("slow", src, slow)

    await download(ctx, games, [fast_source, slow_source], endgame=True)

    assert digests(root) == digests(src)
    [failure] = ctx.named("download-chunk-failed")
    assert (failure["peer_id"], failure["code"]) == ("id-slow", "peer-unreachable")
    held = [
        d for d in ctx.named("download-chunk-finished") if (d["path"], d["offset"]) == slow.first
    ]
    assert [(d["peer_id"], d["duplicate"]) for d in held] == [("id-fast", True)]
    assert slow.first is not None
    asked = ctx.lane.asked("fast")
    assert asked.count((slow.first[0], slow.first[1], CHUNK)) == 1, "not fetched a third time"


async def test_a_scratch_folder_left_by_a_crash_is_cleared_and_never_served(
    ctx: FakeContext, games: Path, src: Path
) -> None:
    root = games / GAME
    (root / SCRATCH_DIR).mkdir(parents=True)
    (root / SCRATCH_DIR / "0").write_bytes(pattern(CHUNK, seed=7))
    with pytest.raises(PeerError) as err:
        check_relative_path(f"{SCRATCH_DIR}/0")
    assert err.value.code == "bad-path", "a reserved name: never asked for, never served"

    left_at_begin: list[bool] = []

    def at_begin() -> None:
        if ctx.events[-1][0] == "download-begin":
            left_at_begin.append((root / SCRATCH_DIR).exists())

    ctx.checks.append(at_begin)
    await download(ctx, games, [ctx.add("a", src)])

    assert left_at_begin == [False], "cleared when the root was prepared, before any chunk"
    assert not (root / SCRATCH_DIR).exists()
    assert digests(root) == digests(src)
    assert SCRATCH_DIR not in {
        f.path.split("/")[0] for f in DescriptorCache().describe(root, CHUNK)
    }
