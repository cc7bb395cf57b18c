"""Issue 17, class 5: the download rule (never follow a link; only regular files inside the root)
holds for every reader of a game root: listing, streaming, install, first-play stamping, scan,
and the chunks a lane sends (test_lane.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from nodes import CATALOG, Start, nodes_in, ready
from test_provider import FILES, list_archives, make_archive, stream
from test_stream import GAME, serve_cnctw

from peer.errors import PeerError
from peer.install import install_game
from peer.launch import apply_launch_settings
from peer.library import open_root_archive, root_archives, scan_game
from peer.unpack import FIXTURE_PAYLOAD, FixtureUnpacker, UnrarUnpacker

UNRAR = shutil.which("unrar") or "unrar"
OUTSIDE = {"secret/outside.txt": b"bytes from outside the games dir\n"}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A RAR archive outside every games dir."""
    return make_archive(tmp_path / "elsewhere", "outside.rar", OUTSIDE)


# -- listing and streaming -------------------------------------------------------------------------


def test_root_archives_are_regular_files_never_links(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "games" / GAME
    root.mkdir(parents=True)
    (root / "a.eti").write_bytes(b"a")
    (root / "b.eti").symlink_to(outside)
    (root / "c.eti").symlink_to(root / "a.eti")  # a link inside the root is still a link
    (root / "d.eti").mkdir()
    assert root_archives(root) == [root / "a.eti"]


def test_a_linked_root_has_no_archives(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "games").mkdir()
    (tmp_path / "games" / GAME).symlink_to(outside.parent, target_is_directory=True)
    (outside.parent / "x.eti").write_bytes(b"x")
    assert root_archives(tmp_path / "games" / GAME) == []


def test_an_archive_is_opened_only_as_a_regular_file(tmp_path: Path, outside: Path) -> None:
    link, fifo = tmp_path / "link.eti", tmp_path / "fifo.eti"
    link.symlink_to(outside)
    os.mkfifo(fifo)
    for path, why in [(link, "cannot be opened"), (fifo, "is not a regular file")]:
        with pytest.raises(PeerError) as caught:
            open_root_archive(path)
        assert caught.value.code == "not-servable" and why in caught.value.message
    os.close(open_root_archive(outside))


async def test_an_archive_swapped_for_a_link_after_listing_is_not_streamed(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "games" / GAME
    make_archive(root, "cnctw.eti", FILES)
    listings = await list_archives(root)
    (root / "cnctw.eti").unlink()
    (root / "cnctw.eti").symlink_to(outside)
    frames = await stream(root, listings, UNRAR)
    assert frames[0][:2] == ("error", "not-servable") and len(frames) == 1, frames


async def test_a_root_archive_linked_outside_is_neither_listed_nor_installed(
    tmp_path: Path, outside: Path
) -> None:
    async with nodes_in(tmp_path) as start:
        await linked_source_refused(start, outside)


async def linked_source_refused(start: Start, outside: Path) -> None:
    source, client = await start("source", unrar=UNRAR), await start("client")
    root = source.games / GAME
    root.mkdir(parents=True)
    (root / "cnctw.eti").symlink_to(outside)
    (root / "version.ini").write_text(CATALOG[GAME] + "\n")
    await ready(source)
    await ready(client)
    await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    failed = await client.wait("download-failed", game_id=GAME)
    skipped = await client.wait("download-source-skipped", game_id=GAME)
    assert (failed["code"], skipped["code"]) == ("no-peers", "not-servable")
    assert skipped["reason"] == f"{GAME} has no archive to stream"
    assert not (client.games / GAME).exists()


# -- install -----------------------------------------------------------------------------------


def downloaded_root(tmp_path: Path) -> Path:
    root = tmp_path / "games" / GAME
    root.mkdir(parents=True)
    (root / "version.ini").write_text(CATALOG[GAME] + "\n")
    return root


def test_install_reads_no_linked_archive(tmp_path: Path, outside: Path) -> None:
    root = downloaded_root(tmp_path)
    (root / "a.eti").write_bytes(b"inside")
    (root / "b.eti").symlink_to(outside)
    install_game(root, FixtureUnpacker())
    assert (root / "local" / FIXTURE_PAYLOAD).read_bytes() == b"inside"


@pytest.mark.parametrize("unpacker", [FixtureUnpacker(), UnrarUnpacker(UNRAR)], ids=type)
def test_an_unpacker_handed_a_link_fails_the_install(
    tmp_path: Path, outside: Path, unpacker: FixtureUnpacker | UnrarUnpacker
) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "a.eti").symlink_to(outside)
    with pytest.raises(PeerError) as caught:
        unpacker.unpack([tmp_path / "a.eti"], tmp_path / "dest")
    assert caught.value.code == "install-failed"
    assert list((tmp_path / "dest").iterdir()) == []


def test_a_linked_sentinel_is_no_download_to_install(tmp_path: Path) -> None:
    root = downloaded_root(tmp_path)
    (tmp_path / "version.ini").write_text(CATALOG[GAME] + "\n")
    (root / "version.ini").unlink()
    (root / "version.ini").symlink_to(tmp_path / "version.ini")
    with pytest.raises(PeerError) as caught:
        install_game(root, FixtureUnpacker())
    assert caught.value.code == "not-downloaded"


# -- first play and scan -------------------------------------------------------------------------


def test_first_play_does_not_stamp_through_a_linked_install(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "account_name.txt").write_text("theirs")
    root = tmp_path / "games" / GAME
    root.mkdir(parents=True)
    (root / "local").symlink_to(elsewhere, target_is_directory=True)
    marker = tmp_path / "state" / "marker"
    with pytest.raises(PeerError) as caught:
        apply_launch_settings(root / "local", marker, "neo", "english")
    assert caught.value.code == "bad-path"
    assert (elsewhere / "account_name.txt").read_text() == "theirs"
    assert not marker.exists()


def test_first_play_does_not_stamp_through_a_linked_game_root(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "local").mkdir(parents=True)
    (elsewhere / "local" / "language.txt").write_text("theirs")
    (tmp_path / "games").mkdir()
    (tmp_path / "games" / GAME).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PeerError):
        apply_launch_settings(tmp_path / "games" / GAME / "local", tmp_path / "m", "n", "de")
    assert (elsewhere / "local" / "language.txt").read_text() == "theirs"


def test_first_play_writes_through_no_planted_temp_link(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "account_name.txt").write_text("stub")
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (local / "account_name.txt.lanpeer-tmp").symlink_to(victim)
    apply_launch_settings(local, tmp_path / "m", "neo", "english")
    assert victim.read_text() == "untouched"
    assert (local / "account_name.txt").read_text() == "neo"


def test_a_linked_local_is_not_an_install(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "games" / GAME).mkdir(parents=True)
    (tmp_path / "games" / GAME / "local").symlink_to(elsewhere, target_is_directory=True)
    assert scan_game(tmp_path / "games", GAME) is None


async def test_the_node_refuses_to_stamp_a_linked_local(tmp_path: Path) -> None:
    async with nodes_in(tmp_path) as start:
        peer = await start("peer")
        serve_cnctw(peer)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "language.txt").write_text("theirs")
        (peer.games / GAME / "local").symlink_to(elsewhere, target_is_directory=True)
        await ready(peer)
        with pytest.raises(PeerError) as caught:
            async with asyncio.timeout(10):
                await peer.run("play", game_id=GAME, username="neo", language="de")
        assert caught.value.code == "not-installed"
        assert (elsewhere / "language.txt").read_text() == "theirs"
