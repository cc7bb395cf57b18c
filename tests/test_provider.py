"""The source side of a streamed install on its own: `list_archives` over real RAR archives, and
`send_entries` writing its frames into one end of a socket pair, with real or fake `unrar`s.

The node-level tests (test_stream.py) prove a stream end to end; these pin what a receiving peer
sees on the wire when the provider fails, and what the source's operator sees in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import structlog
from blake3 import blake3

from peer.budgets import Tally
from peer.errors import PeerError
from peer.protocol import (
    EMPTY_DIGEST,
    ArchiveEntry,
    ArchiveListing,
    EntryHeader,
    ErrorReply,
    StreamEnd,
    decode_lane_reply,
)
from peer.transfer.archives import Headers, read_headers
from peer.transfer.provider import ListingCache, send_entries
from peer.transfer.upload import RateLimiter, progress_deadline

UNRAR = shutil.which("unrar") or "unrar"
LIMIT = 10.0  # seconds; a provider that hangs fails here

Frame = tuple[object, ...]


def make_archive(
    root: Path,
    name: str,
    files: Mapping[str, bytes],
    solid: bool = False,
    dirs: tuple[str, ...] = (),
    stored: bool = False,
) -> Path:
    """A RAR archive of `files` (and the empty folders `dirs`, added as directory entries),
    compressed (`rar` still stores what does not compress) unless `stored`."""
    stage = root.parent / f".stage-{name}"
    for rel, data in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(data)
    for rel in dirs:
        (stage / rel).mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    switches = ["-m0"] if stored else ["-m3", "-s"] if solid else ["-m3"]
    subprocess.run(
        ["rar", "a", "-idq", "-cfg-", "-ma5", *switches, str(root / name), *files, *dirs],
        cwd=stage,
        check=True,
    )
    shutil.rmtree(stage)
    return root / name


async def list_archives(root: Path, unrar: str = UNRAR) -> tuple[ArchiveListing, ...]:
    """The listings a source answers `GetStream` with (digests from a real extraction)."""
    return await ListingCache(unrar, Tally()).listings(root)


def fake_unrar(tmp_path: Path, name: str, body: str) -> str:
    """A shell script standing in for `--unrar`; `$UNRAR` in `body` is the real one."""
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\nUNRAR='{UNRAR}'\n{body}\n")
    script.chmod(0o755)
    return str(script)


async def stream(root: Path, listings: tuple[ArchiveListing, ...], unrar: str) -> list[Frame]:
    """Run `send_entries` into a socket pair and decode what a receiver gets: ("entry", path,
    bytes), ("short", path, bytes) for a cut entry, ("end",) and ("error", code, message)."""
    ours, theirs = socket.socketpair()
    reader, their_writer = await asyncio.open_connection(sock=theirs)
    _, writer = await asyncio.open_connection(sock=ours)

    async def provide() -> None:
        try:
            async with progress_deadline(LIMIT) as progress:
                await send_entries(
                    writer, root, listings, unrar, RateLimiter(None), progress, Tally()
                )
        finally:
            writer.close()

    async def receive() -> list[Frame]:
        frames: list[Frame] = []
        while line := await reader.readline():
            message = decode_lane_reply(line)
            if isinstance(message, EntryHeader):
                try:
                    data = await reader.readexactly(message.size)
                except asyncio.IncompleteReadError as exc:
                    frames.append(("short", message.path, exc.partial))
                    break
                frames.append(("entry", message.path, data))
            elif isinstance(message, StreamEnd):
                frames.append(("end",))
            elif isinstance(message, ErrorReply):
                frames.append(("error", message.code, message.message))
        return frames

    try:
        async with asyncio.timeout(LIMIT):
            _, frames = await asyncio.gather(provide(), receive())
    finally:
        their_writer.close()
    return frames


# b.txt compresses, so `root`'s archive streams through unrar; `stored_root`'s is sent as it lies.
FILES = {"data/a.bin": os.urandom(3000), "data/b.txt": b"bee\n" * 2000, "c.txt": b"sea"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "games" / "cnctw"
    make_archive(root, "cnctw.eti", FILES)
    return root


@pytest.fixture
def stored_root(tmp_path: Path) -> Path:
    root = tmp_path / "games" / "stored"
    make_archive(root, "stored.eti", FILES, stored=True)
    return root


# -- list_archives --------------------------------------------------------------------------------


async def test_listing_reports_solidity_and_folder_entries(tmp_path: Path) -> None:
    root = tmp_path / "g"
    make_archive(root, "a.eti", {"x/f.txt": b"12345", "x/BOX": b"b"}, solid=True, dirs=("x/empty",))
    make_archive(root, "b.eti", {"g.txt": b"g"}, solid=False)
    first, second = await list_archives(root)
    assert (first.name, first.solid, second.name, second.solid) == ("a.eti", True, "b.eti", False)
    by_path = {e.path: e for e in first.entries}
    assert by_path["x/empty"] == ArchiveEntry(
        path="x/empty", size=0, crc32=0, is_dir=True, digest=EMPTY_DIGEST
    )
    assert by_path["x/f.txt"].size == 5 and not by_path["x/f.txt"].is_dir
    assert by_path["x/BOX"].size == 1, "only a trailing / is cut from a name"
    assert not any(e.path.endswith("/") for e in first.entries), "folders carry no trailing /"


async def test_listing_digests_are_of_the_extracted_bytes_and_cached(
    root: Path, tmp_path: Path
) -> None:
    """Issue 17, class 1: each entry carries the BLAKE3 of our own extraction, taken once per
    archive file (like descriptors) and again only when the file changes."""
    log = tmp_path / "passes.log"
    unrar = fake_unrar(tmp_path, "counting", f'echo "$1" >> "{log}"\nexec "$UNRAR" "$@"')
    cache = ListingCache(unrar, Tally())
    (listing,) = await cache.listings(root)
    assert {e.path: e.digest for e in listing.entries} == {
        p: blake3(d).hexdigest() for p, d in FILES.items()
    }
    assert await cache.listings(root) == (listing,)
    assert log.read_text().split() == ["p"], "the second listing came from the cache"
    make_archive(root.parent / "next", "cnctw.eti", {**FILES, "c.txt": b"changed"})
    os.replace(root.parent / "next" / "cnctw.eti", root / "cnctw.eti")
    (changed,) = await cache.listings(root)
    assert {e.path: e.digest for e in changed.entries}["c.txt"] == blake3(b"changed").hexdigest()
    assert log.read_text().split() == ["p", "p"]


async def test_a_listing_pass_that_misses_the_headers_is_not_servable(
    root: Path, tmp_path: Path
) -> None:
    """An unrar whose bytes disagree with the archive's own CRC32s lists nothing."""
    flip = (
        "python3 -c 'import sys; d=sys.stdin.buffer.read(); "
        "sys.stdout.buffer.write(d[:-1] + bytes([d[-1] ^ 1]))'"
    )
    unrar = fake_unrar(tmp_path, "flipping", f'"$UNRAR" "$@" | {flip}')
    with pytest.raises(PeerError) as caught:
        await list_archives(root, unrar)
    assert caught.value.code == "not-servable" and "fails its CRC" in caught.value.message


async def test_a_root_without_archives_is_not_servable(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "readme.txt").write_text("no archive here")
    with pytest.raises(PeerError) as caught:
        await list_archives(tmp_path / "g")
    assert caught.value.code == "not-servable"
    assert caught.value.message == "g has no archive to stream"


# -- send_entries ---------------------------------------------------------------------------------


async def test_entries_follow_the_listing_and_end_the_stream(root: Path) -> None:
    frames = await stream(root, await list_archives(root), UNRAR)
    assert frames == [*(("entry", p, d) for p, d in FILES.items()), ("end",)]


@pytest.mark.parametrize("stored", [False, True], ids=["unrar", "stored"])
async def test_folder_entries_are_skipped_not_the_end(tmp_path: Path, stored: bool) -> None:
    root = tmp_path / "g"
    make_archive(root, "g.eti", FILES, dirs=("empty", "data/deeper"), stored=stored)
    (listing,) = await list_archives(root)
    assert [e.path for e in listing.entries if e.is_dir], "the archive holds folder entries"
    frames = await stream(root, (listing,), UNRAR)
    assert frames == [*(("entry", p, d) for p, d in FILES.items()), ("end",)]


async def test_a_relative_games_dir_that_looks_like_a_switch_still_streams(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root.parent.parent)
    os.rename("games", "-games")
    relative = Path("-games") / root.name
    frames = await stream(relative, await list_archives(relative), UNRAR)
    assert frames[-1] == ("end",) and len(frames) == len(FILES) + 1


async def test_an_unrar_that_cannot_run_is_refused_with_its_reason(root: Path) -> None:
    frames = await stream(root, await list_archives(root), "/missing-unrar")
    assert len(frames) == 1
    kind, code, message = frames[0]
    assert (kind, code) == ("error", "not-servable")
    assert isinstance(message, str) and message.startswith("cannot run /missing-unrar: ")


async def test_a_failing_unrar_is_refused_after_its_entries(root: Path, tmp_path: Path) -> None:
    unrar = fake_unrar(tmp_path, "exit-3", '"$UNRAR" "$@"\nexit 3')
    frames = await stream(root, await list_archives(root), unrar)
    assert frames == [
        *(("entry", p, d) for p, d in FILES.items()),
        ("error", "not-servable", f"{unrar} failed on cnctw.eti (exit 3)"),
    ]


async def test_bytes_beyond_the_listing_are_refused(root: Path, tmp_path: Path) -> None:
    unrar = fake_unrar(tmp_path, "one-more", '"$UNRAR" "$@"\nprintf x')
    frames = await stream(root, await list_archives(root), unrar)
    assert frames[-1] == ("error", "not-servable", f"{unrar} failed on cnctw.eti (exit 0)")
    assert len(frames) == len(FILES) + 1


async def test_an_unrar_that_ends_early_cuts_the_entry_and_logs_why(
    root: Path, tmp_path: Path
) -> None:
    unrar = fake_unrar(tmp_path, "short", "printf abc")
    with structlog.testing.capture_logs() as logs:
        frames = await stream(root, await list_archives(root), unrar)
    assert frames == [("short", "data/a.bin", b"abc")], "no reply can follow a cut entry"
    failed = [e for e in logs if e["event"] == "stream failed"]
    assert failed == [
        {
            "event": "stream failed",
            "log_level": "warning",
            "game_id": "cnctw",
            "code": "not-servable",
            "error": f"{unrar} ended early in data/a.bin",
        }
    ]


async def test_unrar_messages_stay_out_of_the_peer_log(
    root: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The peer's stderr is its structlog JSON log: unrar's own chatter must not land there."""
    unrar = fake_unrar(tmp_path, "chatty", 'echo "UNRAR chatter" >&2\nexec "$UNRAR" "$@"')
    frames = await stream(root, await list_archives(root), unrar)
    assert frames[-1] == ("end",)
    assert "UNRAR chatter" not in capfd.readouterr().err


async def test_a_cancelled_stream_kills_the_whole_provider_group(
    root: Path, tmp_path: Path
) -> None:
    """A wrapper's children share its pipe: the cancel must kill them too, not wait them out."""
    pidfile = tmp_path / "child.pid"
    # The child's pid is on disk before the first byte, so reading "ab" means it is there.
    unrar = fake_unrar(tmp_path, "stuck", f"sleep 60 &\necho $! > '{pidfile}'\nprintf ab\nwait")
    async with providing(root, await list_archives(root), unrar) as (reader, task):
        async with asyncio.timeout(LIMIT):
            assert isinstance(decode_lane_reply(await reader.readline()), EntryHeader)
            assert await reader.readexactly(2) == b"ab"
        child = int(pidfile.read_text())
        task.cancel()
        try:
            async with asyncio.timeout(3):
                await asyncio.gather(task, return_exceptions=True)
            # Killed, its pipe closed: its exit may still be under way on a busy machine, for
            # moments, not the 60 s it would have slept.
            alive = await _still_alive_after(child, 2.0)
        finally:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
    assert not alive, "the wrapper's child outlived the stream"


@contextlib.asynccontextmanager
async def providing(
    root: Path, listings: tuple[ArchiveListing, ...], unrar: str
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.Task[None]]]:
    """`send_entries` running into a socket pair: the receiving end, and the provider's task
    (cancelled and awaited on the way out, if the test has not ended it)."""
    ours, theirs = socket.socketpair()
    reader, their_writer = await asyncio.open_connection(sock=theirs)
    _, writer = await asyncio.open_connection(sock=ours)

    async def provide() -> None:
        async with progress_deadline(LIMIT) as progress:
            await send_entries(writer, root, listings, unrar, RateLimiter(None), progress, Tally())

    task = asyncio.create_task(provide())
    try:
        yield reader, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.close()
        their_writer.close()


async def _still_alive_after(pid: int, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while _alive(pid):
                await asyncio.sleep(0.02)
    return _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_unrar_never_reads_the_peers_stdin(root: Path, tmp_path: Path) -> None:
    """A peer is driven by JSON lines on its stdin: unrar (a password prompt, say) must not
    swallow a pending command."""
    seen = tmp_path / "seen"
    unrar = fake_unrar(tmp_path, "reader", f'head -c 8 > \'{seen}\'\nexec "$UNRAR" "$@"')
    commands, feeder = os.pipe()
    os.write(feeder, b'{"cmd"}\n')
    saved = os.dup(0)
    os.dup2(commands, 0)
    try:
        frames = await stream(root, await list_archives(root), unrar)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(feeder)
    try:
        os.set_blocking(commands, False)
        assert os.read(commands, 100) == b'{"cmd"}\n', "the pending command is still there"
    finally:
        os.close(commands)
    assert seen.read_bytes() == b""
    assert frames[-1] == ("end",)


async def test_unrar_is_asked_for_the_file_data_alone(root: Path, tmp_path: Path) -> None:
    """`unrar p` without `-inul` may print its banner and messages among the data (older
    releases do, on stdout): the provider asks for silence, or the entries would be corrupt."""
    unrar = fake_unrar(
        tmp_path,
        "old-unrar",
        'case " $* " in *" -inul "*|*" -INUL "*) ;; *) printf "UNRAR 3.93 freeware\\n" ;; esac\n'
        'exec "$UNRAR" "$@"',
    )
    frames = await stream(root, await list_archives(root), unrar)
    assert frames == [*(("entry", p, d) for p, d in FILES.items()), ("end",)]


async def test_the_provider_logs_how_its_unrar_ended(root: Path, tmp_path: Path) -> None:
    """Operators (and S46) learn from the log that the provider was reaped, and how."""
    listings = await list_archives(root)
    with structlog.testing.capture_logs() as clean:
        await stream(root, listings, UNRAR)
    stopped = [e for e in clean if e["event"] == "provider stopped"]
    assert stopped == [
        {
            "event": "provider stopped",
            "archive": "cnctw.eti",
            "purpose": "stream",
            "exit_code": 0,
            "log_level": "info",
        }
    ]
    failing = fake_unrar(tmp_path, "fails", "exit 3")
    with structlog.testing.capture_logs() as failed:
        await stream(root, listings, failing)
    codes = [e["exit_code"] for e in failed if e["event"] == "provider stopped"]
    assert codes == [3]


# -- stored archives: sent as they lie ----------------------------------------------------------


def headers(archive: Path) -> Headers:
    fd = os.open(archive, os.O_RDONLY)
    try:
        return read_headers(archive, fd)
    finally:
        os.close(fd)


def test_headers_say_which_archives_lie_as_they_are(root: Path, stored_root: Path) -> None:
    stored = headers(stored_root / "stored.eti")
    data = (stored_root / "stored.eti").read_bytes()
    assert stored.offsets is not None
    assert [data[o : o + len(d)] for o, d in zip(stored.offsets, FILES.values(), strict=True)] == [
        *FILES.values()
    ]
    assert headers(root / "cnctw.eti").offsets is None, "b.txt is compressed"


def test_an_encrypted_stored_archive_is_not_sent_as_it_lies(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(os.urandom(4096))  # no padding: only the flag tells
    archive = tmp_path / "locked.eti"
    subprocess.run(
        ["rar", "a", "-idq", "-cfg-", "-ma5", "-m0", "-psecret", str(archive), "secret.bin"],
        cwd=tmp_path,
        check=True,
    )
    locked = headers(archive)
    assert [e.path for e in locked.listing.entries] == ["secret.bin"]
    assert locked.offsets is None, "its data is ciphertext, not the member"


async def test_a_stored_archive_is_sent_without_unrar(stored_root: Path, tmp_path: Path) -> None:
    listings = await list_archives(stored_root)  # the digests still come from unrar
    with structlog.testing.capture_logs() as logs:
        frames = await stream(stored_root, listings, "/missing-unrar")
    assert frames == [*(("entry", p, d) for p, d in FILES.items()), ("end",)]
    assert [(e["event"], e.get("complete")) for e in logs] == [("archive sent as stored", True)]


async def test_an_archive_changed_since_it_was_listed_is_refused_before_a_byte(
    stored_root: Path, root: Path
) -> None:
    for where, name in ((stored_root, "stored.eti"), (root, "cnctw.eti")):
        listings = await list_archives(where)
        make_archive(where.parent / "next", name, {**FILES, "c.txt": b"SEA"}, stored=True)
        os.replace(where.parent / "next" / name, where / name)
        frames = await stream(where, listings, UNRAR)
        assert frames == [("error", "not-servable", f"{name} changed since it was listed")]


async def test_a_cancelled_stored_send_says_it_did_not_complete(tmp_path: Path) -> None:
    """A receiver that stops reading mid-archive: the send stops with the cancel (S46)."""
    root = tmp_path / "games" / "big"
    make_archive(root, "big.eti", {"big.bin": os.urandom(8 * 1024 * 1024)}, stored=True)
    listings = await list_archives(root)
    with structlog.testing.capture_logs() as logs:
        async with providing(root, listings, UNRAR) as (reader, task):
            async with asyncio.timeout(LIMIT):
                assert isinstance(decode_lane_reply(await reader.readline()), EntryHeader)
                await reader.readexactly(1024)
            task.cancel()
            async with asyncio.timeout(LIMIT):
                await asyncio.gather(task, return_exceptions=True)
    assert [(e["event"], e.get("complete")) for e in logs] == [("archive sent as stored", False)]


async def test_a_compressed_archive_streams_in_one_pass_per_archive(tmp_path: Path) -> None:
    """Never one pass per member: that would decompress a solid archive's prefix again for
    every member. The listing's passes come first, once, then one per archive for the stream."""
    root = tmp_path / "g"
    make_archive(root, "a.eti", FILES, solid=True)
    make_archive(root, "b.eti", {"z/b.txt": b"bee\n" * 3000}, stored=False)
    log = tmp_path / "passes.log"
    unrar = fake_unrar(tmp_path, "counting", f'echo "$1" >> "{log}"\nexec "$UNRAR" "$@"')
    listings = await list_archives(root, unrar)
    frames = await stream(root, listings, unrar)
    in_order = [e.path for listing in listings for e in listing.entries]
    assert frames == [
        *(("entry", p, {**FILES, "z/b.txt": b"bee\n" * 3000}[p]) for p in in_order),
        ("end",),
    ]
    assert log.read_text().split() == ["p"] * 4
