"""Special files on data paths, and our own names as the wrong kind of thing (issue 17 classes
6 and 8): a FIFO, a link, a socket or a directory where the peer expects one of its regular
files (or a file where it expects a directory) never hangs it, is never written or read
through, and never fails every later operation until a person removes it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from nodes import CATALOG, Start, ready
from nodes import CHUNK as CHUNK_NODE

from peer.files import open_regular, write_all
from peer.install import install_game, recover
from peer.launch import ACCOUNT_FILE, MARKER, apply_launch_settings
from peer.paths import BACKUP_DIR, LOCAL_DIR, PROGRESS, SENTINEL, SENTINEL_TMP, STAGING_DIR
from peer.protocol import FileDescriptor
from peer.transfer import disk
from peer.transfer.plan import chunks_of
from peer.transfer.resume import Progress, fingerprint
from peer.transfer.serve import DescriptorCache, hash_chunks
from peer.unpack import FixtureUnpacker

pytestmark = pytest.mark.timeout(30)  # each defect here was a hang

KINDS = ["fifo", "link", "socket", "directory", "file"]
CHUNK = 8


def make(path: Path, kind: str, outside: Path) -> None:
    """Put a `kind` at `path`; a link points at `outside`, which must never change."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        path.symlink_to(outside)
    elif kind == "dangling":
        path.symlink_to(outside.parent / "nowhere")
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    else:
        path.write_bytes(b"not ours")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.write_bytes(b"precious")
    return target


@pytest.fixture
def files(tmp_path: Path) -> tuple[FileDescriptor, ...]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "data.bin").write_bytes(bytes(range(40)))
    (src / "sub" / "more.bin").write_bytes(b"m" * 13)
    (src / SENTINEL).write_text("20250101\n")
    return DescriptorCache().describe(src, CHUNK)


def download(root: Path, files: tuple[FileDescriptor, ...]) -> None:
    """What a download does on disk, in order, with the source's bytes."""
    chunks = chunks_of(files)
    progress = disk.resume_root(root, "g1", files, chunks)
    src = root.parent / "src"
    for i, chunk in enumerate(chunks):
        data = (src / chunk.path).read_bytes()[chunk.offset : chunk.offset + chunk.length]
        fd = open_regular(disk.target_path(root, chunk.path), os.O_WRONLY)
        try:
            write_all(fd, data, chunk.offset)
        finally:
            os.close(fd)
        progress = Progress(progress.game_id, progress.descriptors, progress.verified | {i})
        disk.save_progress(root, progress)
    disk.commit_root(root, files)


@pytest.mark.parametrize("kind", ["fifo", "link", "socket", "directory"])
@pytest.mark.parametrize("name", ["data.bin", "sub/more.bin", "sub"])
def test_a_data_path_of_another_kind_neither_hangs_nor_is_followed(
    tmp_path: Path, files: tuple[FileDescriptor, ...], outside: Path, name: str, kind: str
) -> None:
    root = tmp_path / "g1"
    (root / "sub").mkdir(parents=True)
    if name == "sub":
        (root / "sub").rmdir()
    make(root / name, kind, outside)
    download(root, files)
    assert (root / "data.bin").read_bytes() == bytes(range(40))
    assert (root / "sub" / "more.bin").read_bytes() == b"m" * 13
    assert outside.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [PROGRESS, PROGRESS + ".tmp", SENTINEL_TMP, SENTINEL])
def test_our_own_names_of_the_wrong_kind_do_not_block_a_download(
    tmp_path: Path, files: tuple[FileDescriptor, ...], outside: Path, name: str, kind: str
) -> None:
    root = tmp_path / "g1"
    root.mkdir()
    make(root / name, kind, outside)
    download(root, files)
    assert (root / SENTINEL).read_text() == "20250101\n"
    assert not (root / PROGRESS).exists() and not (root / PROGRESS).is_symlink()
    assert outside.read_bytes() == b"precious"


def test_a_resume_whose_file_became_a_fifo(
    tmp_path: Path, files: tuple[FileDescriptor, ...]
) -> None:
    root = tmp_path / "g1"
    chunks = chunks_of(files)
    disk.resume_root(root, "g1", files, chunks)
    disk.save_progress(root, Progress("g1", fingerprint("g1", files), frozenset({0, 1})))
    (root / "data.bin").unlink()
    os.mkfifo(root / "data.bin")
    assert disk.verified_on_disk(root, chunks[:2]) == [False, False], "judged, not blocked on"
    download(root, files)
    assert (root / "data.bin").read_bytes() == bytes(range(40))


@pytest.mark.parametrize("kind", ["fifo", "link", "socket", "directory"])
def test_a_served_file_swapped_for_another_kind_is_refused_not_blocked_on(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    path = tmp_path / "served.bin"
    make(path, kind, outside)
    with pytest.raises(OSError):
        hash_chunks(path, CHUNK)


@pytest.mark.parametrize("kind", [*KINDS, "dangling"])
@pytest.mark.parametrize("name", [STAGING_DIR, BACKUP_DIR, LOCAL_DIR])
def test_install_names_of_the_wrong_kind_do_not_block_an_install(
    tmp_path: Path, outside: Path, name: str, kind: str
) -> None:
    root = tmp_path / "g1"
    root.mkdir()
    (root / "g1.eti").write_bytes(b"archive")
    (root / SENTINEL).write_text("20250101\n")
    if not (name == LOCAL_DIR and kind == "directory"):
        make(root / name, kind, outside)
    recover(root)  # what start-up does
    install_game(root, FixtureUnpacker())
    assert (root / LOCAL_DIR / "fixture-payload.txt").read_bytes() == b"archive"
    assert not os.path.lexists(root / STAGING_DIR) and not os.path.lexists(root / BACKUP_DIR)
    assert outside.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["fifo", "link", "socket", "file"])
def test_a_backup_that_is_not_a_directory_is_not_restored_as_the_install(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    root = tmp_path / "g1"
    root.mkdir()
    make(root / BACKUP_DIR, kind, outside)
    recover(root)
    assert not os.path.lexists(root / LOCAL_DIR) and not os.path.lexists(root / BACKUP_DIR)


def test_an_archive_that_is_a_link_is_not_unpacked(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "g1"
    root.mkdir()
    (root / SENTINEL).write_text("20250101\n")
    (root / "a.eti").symlink_to(outside)
    (root / "b.eti").write_bytes(b"archive")
    install_game(root, FixtureUnpacker())
    assert (root / LOCAL_DIR / "fixture-payload.txt").read_bytes() == b"archive"


@pytest.mark.parametrize("where", ["bfbc2.eti", PROGRESS])
async def test_a_download_over_a_fifo_or_a_progress_directory_finishes(
    start: Start, where: str
) -> None:
    """Whole nodes: the FIFO hung the download (and `cancel-download` with it); the progress
    directory failed every download of the game until a person removed it."""
    a, c = await start("a"), await start("c")
    root = a.games / "bfbc2"
    root.mkdir()
    (root / "bfbc2.eti").write_bytes(b"e" * (3 * CHUNK_NODE + 5))
    (root / SENTINEL).write_text(CATALOG["bfbc2"] + "\n")
    (c.games / "bfbc2").mkdir()
    if where == PROGRESS:
        (c.games / "bfbc2" / PROGRESS).mkdir()
    else:
        os.mkfifo(c.games / "bfbc2" / where)
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)
    await c.run("download", game_id="bfbc2", install=False)
    await c.wait("download-finished", game_id="bfbc2", timeout=15)
    assert (c.games / "bfbc2" / "bfbc2.eti").read_bytes() == (root / "bfbc2.eti").read_bytes()


@pytest.mark.parametrize("kind", ["fifo", "link", "directory"])
def test_launch_stamping_through_a_temporary_name_of_another_kind(
    tmp_path: Path, outside: Path, kind: str
) -> None:
    """The game's own files are hostile: a FIFO at our temporary name hung `play`."""
    local = tmp_path / "local"
    local.mkdir()
    (local / ACCOUNT_FILE).write_text("old")
    make(local / (ACCOUNT_FILE + ".lanpeer-tmp"), kind, outside)
    written = apply_launch_settings(local, tmp_path / "state" / MARKER, "ann", "english")
    assert written["account_name_written"] and (local / ACCOUNT_FILE).read_text() == "ann"
    assert outside.read_bytes() == b"precious"
