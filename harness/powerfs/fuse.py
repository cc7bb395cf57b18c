"""The FUSE shell: kernel requests onto the tree, fsync and fsyncdir onto the disk.

Binding: mfusepy, the maintained fork of fusepy (fusepy itself saw no release since 2018). It is
one pure-Python file over libfuse through ctypes, so the lab can copy it into a peer container
with this package, and it speaks libfuse 3 (Debian's `fuse3`). pyfuse3, libfuse's own binding,
would need a C build against libfuse3-dev on every machine and in the image, and trio.

Single-threaded (`nothreads`): every request runs to completion before the next, so the tree
needs no lock; a peer's files here are small, the scenarios' point is which bytes survive.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import time
from collections.abc import Callable
from typing import Any, TypeVar

os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")  # the host may also have libfuse 2
import mfusepy

from . import ARM, log
from .disk import Disk
from .tree import Dir, File, FsError, Node, Tree, st_mode

T = TypeVar("T")


def _refusing(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn the tree's refusals into the errno the kernel hands back."""

    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except FsError as exc:
            raise mfusepy.FuseOSError(exc.errno) from None

    wrapper.__name__ = fn.__name__
    return wrapper


class PowerFs(mfusepy.Operations):  # type: ignore[misc]
    use_ns = True  # times as integer nanoseconds

    def __init__(self, tree: Tree, disk: Disk, mounted: Callable[[], None]) -> None:
        self.mounted = mounted
        self.tree = tree
        self.disk = disk
        self.handles: dict[int, File] = {}  # an open file stays readable after its unlink
        self.next_fh = 1
        self.syncs = 0  # since this boot
        self.cut_at: int | None = None  # the sync that never happens: the power goes first

    def _sync_point(self, what: str, path: str | None) -> None:
        """Every fsync and fsyncdir passes here before it touches the disk. Once armed (the
        lab writes N to the disk's ARM file, or 0 to disarm; read at the next sync, then
        removed), the N-th
        sync from then kills this process group instead: the peer and this mount die at once
        and that sync, with everything after the one before it, is lost."""
        self.syncs += 1
        arm = self.disk.root / ARM
        if arm.is_file():  # N > 0 arms (replacing any earlier arming), 0 disarms
            count = int(arm.read_text().strip() or "0")
            arm.unlink()
            self.cut_at = self.syncs - 1 + count if count > 0 else None
        if self.cut_at is not None and self.syncs >= self.cut_at:
            log.info("powerfs-power-cut", sync=self.syncs, op=what, path=path)
            os.killpg(0, signal.SIGKILL)  # a container's init survives it, and then exits

    def _node(self, path: str | None, fh: int | None = None) -> Node:
        if fh and fh in self.handles:
            return self.handles[fh]
        if path is None:
            raise FsError(errno.EBADF)
        return self.tree.lookup(path)

    def _file(self, path: str | None, fh: int | None) -> File:
        node = self._node(path, fh)
        if isinstance(node, Dir):
            raise FsError(errno.EISDIR)
        return node

    def _handle(self, node: File) -> int:
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.handles[fh] = node
        return fh

    def init(self, path: str) -> None:
        self.mounted()

    # -- attributes ----------------------------------------------------------------------------

    @_refusing
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        node = self._node(path, fh)
        size = len(node.data) if isinstance(node, File) else 4096
        links = (
            2 + sum(isinstance(c, Dir) for c in node.entries.values())
            if isinstance(node, Dir)
            else 1
        )
        return {
            "st_mode": st_mode(node),
            "st_ino": node.id,
            "st_nlink": links,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_mtime": node.mtime_ns,
            "st_ctime": node.mtime_ns,
            "st_atime": node.mtime_ns,
        }

    @_refusing
    def chmod(self, path: str | None, mode: int) -> int:
        self._node(path).mode = stat.S_IMODE(mode)
        return 0

    @_refusing
    def chown(self, path: str | None, uid: int, gid: int) -> int:
        self._node(path)
        return 0  # one owner here: whoever mounted

    @_refusing
    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        self._node(path).mtime_ns = times[1] if times else time.time_ns()
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        blocks = 1 << 24  # 64 GiB of 4 KiB blocks: the peer never runs out here
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": blocks,
            "f_bfree": blocks,
            "f_bavail": blocks,
            "f_files": 1 << 20,
            "f_ffree": 1 << 20,
            "f_namemax": 255,
        }

    @_refusing
    def access(self, path: str, amode: int) -> int:
        self._node(path)
        return 0

    # -- directories ---------------------------------------------------------------------------

    @_refusing
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        """With `use_ino` every entry needs its inode number: readdir(3) skips an entry whose
        d_ino is 0, which is what a bare name would get."""
        node = self.tree.dir(path)
        here = {"st_mode": st_mode(node), "st_ino": node.id}
        return [
            (".", here, 0),
            ("..", here, 0),
            *(
                (name, {"st_mode": st_mode(c), "st_ino": c.id}, 0)
                for name, c in node.entries.items()
            ),
        ]

    @_refusing
    def mkdir(self, path: str, mode: int) -> int:
        self.tree.mkdir(path, mode)
        return 0

    @_refusing
    def rmdir(self, path: str) -> int:
        self.tree.rmdir(path)
        return 0

    @_refusing
    def unlink(self, path: str) -> int:
        self.tree.unlink(path)
        return 0

    @_refusing
    def rename(self, old: str, new: str) -> int:
        self.tree.rename(old, new)
        return 0

    def symlink(self, target: str, source: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)  # the peer makes no links; neither does a game

    def link(self, target: str, source: str) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise mfusepy.FuseOSError(errno.EPERM)

    @_refusing
    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        node = self._node(path)
        if not isinstance(node, Dir):
            raise FsError(errno.ENOTDIR)
        self._sync_point("fsyncdir", path)
        self.disk.sync_dir(node, self.tree.next_id)
        return 0

    # -- files ---------------------------------------------------------------------------------

    @_refusing
    def create(self, path: str, mode: int, flags: int = 0) -> int:
        return self._handle(self.tree.create(path, mode))

    @_refusing
    def open(self, path: str, flags: int) -> int:
        return self._handle(self.tree.file(path))

    def release(self, path: str | None, fh: int) -> int:
        self.handles.pop(fh, None)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close(2) promises nothing durable

    @_refusing
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.tree.read(self._file(path, fh), offset, size)

    @_refusing
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return self.tree.write(self._file(path, fh), offset, data)

    @_refusing
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self.tree.truncate(self._file(path, fh), length)
        return 0

    @_refusing
    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        node = self._file(path, fh)
        self._sync_point("fdatasync" if datasync else "fsync", path)
        self.disk.sync_file(node, self.tree.next_id)
        return 0


def serve(mountpoint: str, tree: Tree, disk: Disk, mounted: Callable[[], None]) -> None:
    """Mount and serve until unmounted (fusermount3 -u) or the process dies (the power cut).

    hard_remove: libfuse's high-level API would otherwise rename an open file that is unlinked
    to `.fuse_hidden*`, a name a games root must never show. Kernel caches stay on: only this
    process ever changes the tree, and the mount dies with it.
    """
    mfusepy.FUSE(
        PowerFs(tree, disk, mounted),
        mountpoint,
        foreground=True,
        nothreads=True,
        hard_remove=True,
        use_ino=True,
        fsname="powerfs",
    )
