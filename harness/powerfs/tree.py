"""The live filesystem, in memory: what every process on the mount sees until the power goes.

Pure: nodes and the POSIX rules for changing them, refusals as `FsError(errno)`. What is durable
is not this module's business (disk.py); it only gives every node a stable id so the disk can
name it.
"""

from __future__ import annotations

import errno
import stat
import time
from dataclasses import dataclass, field

ROOT_ID = 1
NAME_MAX = 255


class FsError(Exception):
    """A refusal the kernel passes to the caller as this errno."""

    def __init__(self, code: int) -> None:
        super().__init__(errno.errorcode.get(code, str(code)))
        self.errno = code


@dataclass(eq=False)
class File:
    id: int
    mode: int = 0o644  # permission bits only
    mtime_ns: int = field(default_factory=time.time_ns)
    data: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class Dir:
    id: int
    mode: int = 0o755
    mtime_ns: int = field(default_factory=time.time_ns)
    entries: dict[str, Node] = field(default_factory=dict)


Node = File | Dir


def split(path: str) -> list[str]:
    """'/a/b' -> ['a', 'b']; FUSE hands us absolute, normalised paths."""
    return [part for part in path.split("/") if part]


def st_mode(node: Node) -> int:
    kind = stat.S_IFDIR if isinstance(node, Dir) else stat.S_IFREG
    return kind | node.mode


class Tree:
    def __init__(self, root: Dir | None = None, next_id: int = ROOT_ID + 1) -> None:
        self.root = root if root is not None else Dir(ROOT_ID)
        self.next_id = next_id

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    # -- lookups -------------------------------------------------------------------------------

    def lookup(self, path: str) -> Node:
        node: Node = self.root
        for part in split(path):
            if not isinstance(node, Dir):
                raise FsError(errno.ENOTDIR)
            try:
                node = node.entries[part]
            except KeyError:
                raise FsError(errno.ENOENT) from None
        return node

    def dir(self, path: str) -> Dir:
        node = self.lookup(path)
        if not isinstance(node, Dir):
            raise FsError(errno.ENOTDIR)
        return node

    def file(self, path: str) -> File:
        node = self.lookup(path)
        if isinstance(node, Dir):
            raise FsError(errno.EISDIR)
        return node

    def parent(self, path: str) -> tuple[Dir, str]:
        """The directory that holds `path`'s last name, and that name."""
        parts = split(path)
        if not parts:
            raise FsError(errno.EBUSY)  # the root has no parent to change
        name = parts[-1]
        if len(name.encode()) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        return self.dir("/" + "/".join(parts[:-1])), name

    # -- changes -------------------------------------------------------------------------------

    def create(self, path: str, mode: int) -> File:
        node = File(self.new_id(), mode=stat.S_IMODE(mode))
        self._add(path, node)
        return node

    def mkdir(self, path: str, mode: int) -> Dir:
        node = Dir(self.new_id(), mode=stat.S_IMODE(mode))
        self._add(path, node)
        return node

    def _add(self, path: str, node: Node) -> None:
        parent, name = self.parent(path)
        if name in parent.entries:
            raise FsError(errno.EEXIST)
        parent.entries[name] = node
        parent.mtime_ns = time.time_ns()

    def unlink(self, path: str) -> None:
        self._remove(path, directory=False)

    def rmdir(self, path: str) -> None:
        self._remove(path, directory=True)

    def _remove(self, path: str, directory: bool) -> None:
        parent, name = self.parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise FsError(errno.ENOENT)
        if isinstance(node, Dir) != directory:
            raise FsError(errno.ENOTDIR if directory else errno.EISDIR)
        if isinstance(node, Dir) and node.entries:
            raise FsError(errno.ENOTEMPTY)
        del parent.entries[name]
        parent.mtime_ns = time.time_ns()

    def rename(self, old: str, new: str) -> None:
        """rename(2): atomically replace `new` (a file by a file, a directory by an empty one)."""
        old_parent, old_name = self.parent(old)
        node = old_parent.entries.get(old_name)
        if node is None:
            raise FsError(errno.ENOENT)
        new_parent, new_name = self.parent(new)
        if isinstance(node, Dir) and self._contains(node, new_parent):
            raise FsError(errno.EINVAL)  # a directory into its own subtree
        target = new_parent.entries.get(new_name)
        if target is node:
            return
        if target is not None:
            if isinstance(node, Dir) and not isinstance(target, Dir):
                raise FsError(errno.ENOTDIR)
            if isinstance(target, Dir):
                if not isinstance(node, Dir):
                    raise FsError(errno.EISDIR)
                if target.entries:
                    raise FsError(errno.ENOTEMPTY)
        del old_parent.entries[old_name]
        new_parent.entries[new_name] = node
        now = time.time_ns()
        old_parent.mtime_ns = new_parent.mtime_ns = now

    @staticmethod
    def _contains(ancestor: Dir, node: Dir) -> bool:
        if node is ancestor:
            return True
        return any(
            isinstance(child, Dir) and Tree._contains(child, node)
            for child in ancestor.entries.values()
        )

    @staticmethod
    def write(node: File, offset: int, data: bytes) -> int:
        end = offset + len(data)
        if end > len(node.data):
            node.data.extend(bytes(end - len(node.data)))
        node.data[offset:end] = data
        node.mtime_ns = time.time_ns()
        return len(data)

    @staticmethod
    def read(node: File, offset: int, size: int) -> bytes:
        return bytes(node.data[offset : offset + size])

    @staticmethod
    def truncate(node: File, length: int) -> None:
        if length < 0:
            raise FsError(errno.EINVAL)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.mtime_ns = time.time_ns()
