"""powerfs keeps what POSIX promises survives a power cut, and nothing more.

The tree and the disk are tested as plain objects (a "cut" is booting the disk again: the tree
in memory is what the cut loses); the last tests mount it with FUSE on this host and cut the
power of a real process group.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.powerfs import ARM, run_argv
from harness.powerfs.__main__ import seed_tree
from harness.powerfs.disk import Disk
from harness.powerfs.tree import Dir, File, FsError, Node, Tree


def snapshot(node: Node) -> object:
    """A tree as plain values: a file's bytes, a directory's entries."""
    if isinstance(node, File):
        return bytes(node.data)
    return {name: snapshot(child) for name, child in node.entries.items()}


def fresh(tmp_path: Path) -> tuple[Tree, Disk]:
    tree = Tree()
    tree.mkdir("/games", 0o755)
    disk = Disk(tmp_path / "disk")
    disk.root.mkdir()
    disk.format(tree)
    return tree, disk


def reboot(disk: Disk) -> object:
    """What a cut now would leave. Booted from a copy: a boot tidies its disk (forgets blobs no
    durable name reaches), and the test goes on with the live one."""
    copy = disk.root.with_name(disk.root.name + "-booted")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(disk.root, copy)
    return snapshot(Disk(copy).boot().root)


def write(tree: Tree, path: str, data: bytes) -> File:
    node = tree.create(path, 0o644)
    tree.write(node, 0, data)
    return node


def write_durably(tree: Tree, disk: Disk, path: str, data: bytes) -> File:
    """Write a file in /games, then sync it and /games: both its bytes and its name hold."""
    node = write(tree, path, data)
    disk.sync_file(node, tree.next_id)
    disk.sync_dir(tree.dir("/games"), tree.next_id)
    return node


# -- the tree ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "old", "new", "code"),
    [
        ((), "/a", "/b", errno.ENOENT),
        (("d:/d", "f:/f"), "/d", "/f", errno.ENOTDIR),
        (("d:/d", "f:/f"), "/f", "/d", errno.EISDIR),
        (("d:/d", "d:/e", "f:/e/x"), "/d", "/e", errno.ENOTEMPTY),
        (("d:/d", "d:/d/sub"), "/d", "/d/sub/inner", errno.EINVAL),
    ],
)
def test_rename_refuses_as_posix_does(
    setup: tuple[str, ...], old: str, new: str, code: int
) -> None:
    tree = Tree()
    for item in setup:
        kind, path = item.split(":")
        tree.mkdir(path, 0o755) if kind == "d" else tree.create(path, 0o644)
    with pytest.raises(FsError) as err:
        tree.rename(old, new)
    assert err.value.errno == code


def test_rename_replaces_a_file_and_an_empty_directory() -> None:
    tree = Tree()
    write(tree, "/a", b"new")
    write(tree, "/b", b"old")
    tree.rename("/a", "/b")
    tree.mkdir("/d", 0o755)
    tree.mkdir("/e", 0o755)
    tree.rename("/d", "/e")
    assert snapshot(tree.root) == {"b": b"new", "e": {}}


def test_unlink_rmdir_and_lookups_refuse_the_wrong_kind() -> None:
    tree = Tree()
    tree.mkdir("/d", 0o755)
    write(tree, "/d/f", b"x")
    calls: list[tuple[Callable[[], object], int]] = [
        (lambda: tree.unlink("/d"), errno.EISDIR),
        (lambda: tree.rmdir("/d/f"), errno.ENOTDIR),
        (lambda: tree.rmdir("/d"), errno.ENOTEMPTY),
        (lambda: tree.lookup("/d/f/g"), errno.ENOTDIR),
        (lambda: tree.create("/d/f", 0o644), errno.EEXIST),
        (lambda: tree.create("/" + "x" * 256, 0o644), errno.ENAMETOOLONG),
    ]
    for call, code in calls:
        with pytest.raises(FsError) as err:
            call()
        assert err.value.errno == code


def test_writes_extend_with_zeros_and_truncate_both_ways() -> None:
    tree = Tree()
    f = write(tree, "/f", b"ab")
    tree.write(f, 4, b"z")
    assert bytes(f.data) == b"ab\0\0z"
    tree.truncate(f, 1)
    tree.truncate(f, 3)
    assert Tree.read(f, 0, 10) == b"a\0\0"


# -- what a cut keeps ----------------------------------------------------------------------------


def test_nothing_unsynced_survives(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    write(tree, "/games/f", b"data")
    tree.mkdir("/games/d", 0o755)
    assert reboot(disk) == {"games": {}}


def test_a_synced_file_without_a_synced_name_is_lost(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    disk.sync_file(write(tree, "/games/f", b"data"), tree.next_id)
    assert reboot(disk) == {"games": {}}


def test_a_synced_name_without_synced_bytes_boots_empty(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    write(tree, "/games/f", b"data")
    disk.sync_dir(tree.dir("/games"), tree.next_id)
    assert reboot(disk) == {"games": {"f": b""}}


def test_bytes_are_those_of_the_last_sync(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    f = write_durably(tree, disk, "/games/f", b"first")
    tree.truncate(f, 0)
    tree.write(f, 0, b"second, never synced")
    assert reboot(disk) == {"games": {"f": b"first"}}


def test_a_rename_needs_its_directory_synced(tmp_path: Path) -> None:
    """The write-then-rename idiom: without the directory's sync the old name stays."""
    tree, disk = fresh(tmp_path)
    write_durably(tree, disk, "/games/cfg", b"old")
    disk.sync_file(write(tree, "/games/cfg.tmp", b"new"), tree.next_id)
    tree.rename("/games/cfg.tmp", "/games/cfg")
    assert reboot(disk) == {"games": {"cfg": b"old"}}
    disk.sync_dir(tree.dir("/games"), tree.next_id)
    assert reboot(disk) == {"games": {"cfg": b"new"}}


def test_an_unlink_is_undone_unless_its_directory_is_synced(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    write_durably(tree, disk, "/games/f", b"kept")
    tree.unlink("/games/f")
    assert reboot(disk) == {"games": {"f": b"kept"}}


def test_a_new_folder_needs_its_parent_synced(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    tree.mkdir("/games/g", 0o755)
    f = write(tree, "/games/g/f", b"x")
    disk.sync_file(f, tree.next_id)
    disk.sync_dir(tree.dir("/games/g"), tree.next_id)
    assert reboot(disk) == {"games": {}}
    disk.sync_dir(tree.dir("/games"), tree.next_id)
    assert reboot(disk) == {"games": {"g": {"f": b"x"}}}


def test_a_directory_moved_between_two_synced_parents_boots_as_two_copies(
    tmp_path: Path,
) -> None:
    tree, disk = fresh(tmp_path)
    tree.mkdir("/games/a", 0o755)
    tree.mkdir("/games/b", 0o755)
    tree.mkdir("/games/a/d", 0o755)
    f = write(tree, "/games/a/d/f", b"x")
    disk.sync_file(f, tree.next_id)
    for path in ("/games/a/d", "/games/a", "/games/b", "/games"):
        disk.sync_dir(tree.dir(path), tree.next_id)
    tree.rename("/games/a/d", "/games/b/d")
    disk.sync_dir(tree.dir("/games/b"), tree.next_id)  # /games/a not synced: d is in both
    booted = Disk(disk.root).boot()  # the live disk is not used again
    assert snapshot(booted.root) == {"games": {"a": {"d": {"f": b"x"}}, "b": {"d": {"f": b"x"}}}}
    ids = [n.id for n in (booted.lookup("/games/a/d"), booted.lookup("/games/b/d"))]
    assert len(set(ids)) == 2, "two names, two nodes: a change to one must not show in the other"


def test_boot_forgets_blobs_no_durable_name_reaches(tmp_path: Path) -> None:
    tree, disk = fresh(tmp_path)
    disk.sync_file(write(tree, "/games/orphan", b"x" * 100), tree.next_id)
    assert len(list(disk.blobs.iterdir())) == 1
    Disk(disk.root).boot()
    assert list(disk.blobs.iterdir()) == []


def test_seeding_copies_files_and_folders_and_boots_whole(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "g" / "sub").mkdir(parents=True)
    (seed / "g" / "sub" / "f").write_bytes(b"payload")
    (seed / "link").symlink_to(seed / "g")
    tree = seed_tree([("games", seed), ("state", tmp_path / "absent")])
    disk = Disk(tmp_path / "disk")
    disk.root.mkdir()
    disk.format(tree)
    assert reboot(disk) == {"games": {"g": {"sub": {"f": b"payload"}}}, "state": {}}


# A program over the tree; after every step the same step's syncs (each file touched, then
# every directory) make it durable, so a cut at any point loses nothing.
NAMES = st.sampled_from(["a", "b", "c"])
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "write", "mkdir", "unlink", "rename", "rmdir"]), NAMES, NAMES
    ),
    max_size=25,
)


def run_step(tree: Tree, step: tuple[str, str, str]) -> File | None:
    what, x, y = step
    try:
        if what == "create":
            return write(tree, f"/games/{x}", x.encode() * 3)
        if what == "write":
            node = tree.file(f"/games/{x}")
            tree.write(node, len(node.data), y.encode())
            return node
        if what == "mkdir":
            tree.mkdir(f"/games/{x}", 0o755)
        elif what == "unlink":
            tree.unlink(f"/games/{x}")
        elif what == "rmdir":
            tree.rmdir(f"/games/{x}")
        else:
            tree.rename(f"/games/{x}", f"/games/{y}")
    except FsError:
        pass
    return None


def all_dirs(node: Dir) -> list[Dir]:
    return [node, *(d for c in node.entries.values() if isinstance(c, Dir) for d in all_dirs(c))]


@settings(max_examples=60, deadline=None)
@given(steps=STEPS)
def test_a_program_that_syncs_every_step_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str]]
) -> None:
    tree, disk = fresh(tmp_path_factory.mktemp("p"))
    for step in steps:
        touched = run_step(tree, step)
        if touched is not None:
            disk.sync_file(touched, tree.next_id)
        for d in all_dirs(tree.root):
            disk.sync_dir(d, tree.next_id)
        assert reboot(disk) == snapshot(tree.root)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS)
def test_a_program_that_never_syncs_leaves_the_formatted_tree(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str]]
) -> None:
    tree, disk = fresh(tmp_path_factory.mktemp("p"))
    write(tree, "/games/a", b"seeded")
    disk.format(tree)
    for step in steps:
        run_step(tree, step)
    assert reboot(disk) == {"games": {"a": b"seeded"}}


# -- mounted: a real process group loses its power --------------------------------------------

FUSE_MISSING = not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None
needs_fuse = pytest.mark.skipif(
    FUSE_MISSING, reason="needs /dev/fuse and fusermount3 (scripts/setup.sh installs fuse3)"
)

WRITER = textwrap.dedent(
    """
    import os, sys
    mnt = sys.argv[1]
    def write(path, data, sync):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
        os.close(fd)
    def sync_dir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
    write(mnt + "/games/careless.tmp", b"new", False)
    os.replace(mnt + "/games/careless.tmp", mnt + "/games/careless")
    write(mnt + "/games/careful.tmp", b"new", True)
    os.replace(mnt + "/games/careful.tmp", mnt + "/games/careful")
    sync_dir(mnt + "/games")
    print("written", flush=True)
    write(mnt + "/games/never", b"x", True)  # the armed cut takes this sync
    print("not reached", flush=True)
    """
)


@needs_fuse
def test_a_cut_at_an_armed_sync_keeps_only_what_was_synced(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "careless").write_bytes(b"old")
    (seed / "careful").write_bytes(b"old")
    disk, mount = tmp_path / "disk", tmp_path / "mnt"
    disk.mkdir()
    (disk / ARM).write_text("3")  # the writer's 3rd sync: careful.tmp, games, never's data
    argv = run_argv(
        sys.executable,
        "harness.powerfs",
        str(disk),
        str(mount),
        {"games": str(seed)},
        [sys.executable, "-c", WRITER, str(mount)],
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, start_new_session=True)
    subprocess.run(["fusermount3", "-u", "-z", str(mount)], capture_output=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr  # the whole group, supervisor too
    assert done.stdout == "written\n", done
    assert '"powerfs-power-cut"' in done.stderr
    assert reboot(Disk(disk)) == {"games": {"careless": b"", "careful": b"new"}}


@needs_fuse
def test_a_mount_runs_the_command_and_hands_back_its_status(tmp_path: Path) -> None:
    disk, mount = tmp_path / "disk", tmp_path / "mnt"
    script = "import os, sys; print(sorted(os.listdir(sys.argv[1]))); sys.exit(3)"
    argv = run_argv(
        sys.executable,
        "harness.powerfs",
        str(disk),
        str(mount),
        {"games": "", "state": ""},
        [sys.executable, "-c", script, str(mount)],
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "['games', 'state']\n"), done.stderr
    assert not os.path.ismount(mount)
