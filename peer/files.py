"""Opening files whose paths hostile parties can shape: a game root's files on either side, a
progress record, a sentinel, state files, a file named on the command line.

Whoever can write the directory chooses what the name is: a link to any file we can read, a
FIFO that blocks the opener forever, a device that never ends, or a file far larger than the
format allows. So every file is opened without following a link and without blocking, and used
only if it is a regular file; a reader reads at most `limit` bytes. `clear_wrong_kind` removes
whatever sits at one of our own names (a reserved bookkeeping name) as the wrong kind of thing,
so a directory named `.lanpeer-progress` cannot fail every download until a person removes it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path


def open_regular(path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A blocking fd on the regular file at `path` (created if `flags` say so); OSError if it is
    a link, a FIFO, a device, a socket or a directory. A FIFO never blocks the open: read-only it
    opens and is refused by kind, write-only it fails at once (ENXIO)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{os.path.basename(path)} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small_file(path: Path, limit: int) -> bytes:
    """The whole file; OSError if it is missing, a link or not a regular file, ValueError if it
    is larger than `limit` bytes."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if size > limit or len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """`pwrite` all of `data`: a filling disk may write part of it before it fails."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "the disk accepted no bytes")
        view, offset = view[written:], offset + written


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create or overwrite the regular file at `path` with `data` (durably: it is replaced by a
    rename next, and must not be empty after a crash); refuses a link or special file there."""
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable; never through a link, never blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Durability, as a power cut tests it (the lab's powerfs): a file's bytes survive only once the
# file is fsynced, and a name (create, rename, unlink, mkdir) only once its directory is. A kill
# keeps both in the page cache, so only a power cut finds a missing sync.


def replace_durably(tmp: Path, path: Path) -> None:
    """rename(tmp, path), then sync the directory: the new name is then what survives a power
    cut. `tmp` must already be synced (write_file does)."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


def made_durable(path: Path, top: Path) -> None:
    """Sync the directories from `path` up to `top` (exclusive), each in its parent: a folder we
    just created (mkdir -p) exists after a power cut only once its parent is synced."""
    here = path
    while here != top and top in here.parents:
        fsync_dir(here.parent)
        here = here.parent


def sync_names(top: Path) -> None:
    """Make every name in a tree we made durable: each directory's entries, deepest first,
    `top` included (not the files' bytes)."""
    for dirpath, _dirnames, _filenames in os.walk(top, topdown=False):
        fsync_dir(Path(dirpath))


def fsync_file(path: Path) -> None:
    """fsync the regular file at `path`, never through a link, never blocking on a FIFO."""
    fd = open_regular(path)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(top: Path) -> None:
    """Make a tree we wrote durable: every regular file's bytes, then every name. Before the
    rename that publishes it (an install's staging becoming `local/`). Links and special files
    are left as they are."""
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            if is_kind(full := Path(dirpath, name), directory=False):
                fsync_file(full)
    sync_names(top)


def is_kind(path: Path, directory: bool) -> bool:
    """Whether `path` is, without following a link, a real directory (or a regular file)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)


def remove_any(path: Path) -> None:
    """Remove whatever is at `path` (a tree, a file, a link, a FIFO) without following a link."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def clear_wrong_kind(path: Path, directory: bool) -> None:
    """Remove what is at `path` unless it is a real directory (or a regular file) as wanted."""
    if not is_kind(path, directory):
        remove_any(path)
