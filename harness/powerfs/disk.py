"""The durable image: only what fsync and fsyncdir promised, so that killing the mount's
process loses exactly what a power cut loses.

On the real disk under `root`:
  index.json    every durable directory's entries (name -> node id) and every durable node's
                mode and mtime
  blobs/<id>    a file's bytes as of its last fsync (a file named durably but never synced
                boots empty, as POSIX allows)
  cut-at-sync   the lab's arming of a power cut at a chosen sync (fuse.py); not the image

The rules, as POSIX states them and lazyfs enforces them:
  - `fsync(file)` makes its bytes and size durable, under whatever names are durable;
  - `fsync(dir)` makes that directory's entries durable: a create, a rename's arrival or
    departure, an unlink, a mkdir in it. A new name does not survive until its directory is
    synced, even if the file's bytes were;
  - nothing else does: not close, not rename, not a write that returned.

Every write here replaces its file by rename, so a kill in the middle leaves the image as it
was before that sync. Nothing here calls fsync on the real disk: the host does not lose power,
the peer's world does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import ARM  # noqa: F401  (the lab's arming file lives beside the image)
from .tree import ROOT_ID, Dir, File, Node, Tree

INDEX = "index.json"
BLOBS = "blobs"


class Disk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / BLOBS
        self.next_id = ROOT_ID + 1
        self.dirs: dict[int, dict[str, Any]] = {}
        self.files: dict[int, dict[str, Any]] = {}

    def formatted(self) -> bool:
        return (self.root / INDEX).is_file()

    # -- syncs ---------------------------------------------------------------------------------

    def sync_file(self, node: File, next_id: int) -> None:
        """fsync/fdatasync: the file's bytes, size, mode and mtime become durable."""
        self._write(self.blobs / str(node.id), bytes(node.data))
        self.files[node.id] = {"mode": node.mode, "mtime_ns": node.mtime_ns}
        self._save_index(next_id)

    def sync_dir(self, node: Dir, next_id: int) -> None:
        """fsync of a directory: its entries become durable. A child new to the image is
        recorded with no bytes (a file) or no entries (a directory) until it is synced too."""
        entries = {name: child.id for name, child in node.entries.items()}
        self.dirs[node.id] = {"mode": node.mode, "mtime_ns": node.mtime_ns, "entries": entries}
        for child in node.entries.values():
            if isinstance(child, Dir) and child.id not in self.dirs:
                self.dirs[child.id] = {
                    "mode": child.mode,
                    "mtime_ns": child.mtime_ns,
                    "entries": {},
                }
            elif isinstance(child, File) and child.id not in self.files:
                self.files[child.id] = {"mode": child.mode, "mtime_ns": child.mtime_ns}
        self._save_index(next_id)

    # -- format and boot -----------------------------------------------------------------------

    def format(self, tree: Tree) -> None:
        """Make the whole tree durable (a fresh disk seeded from a directory, or a normalised
        boot): every file's bytes, every directory's entries; blobs of nothing are removed."""
        self.dirs, self.files = {}, {}
        self.blobs.mkdir(parents=True, exist_ok=True)
        keep: set[str] = set()

        def walk(node: Node) -> None:
            if isinstance(node, File):
                keep.add(str(node.id))
                blob = self.blobs / str(node.id)
                if not blob.is_file():  # ids are never reused: a blob there holds these bytes
                    self._write(blob, bytes(node.data))
                self.files[node.id] = {"mode": node.mode, "mtime_ns": node.mtime_ns}
                return
            self.dirs[node.id] = {
                "mode": node.mode,
                "mtime_ns": node.mtime_ns,
                "entries": {name: child.id for name, child in node.entries.items()},
            }
            for child in node.entries.values():
                walk(child)

        walk(tree.root)
        self._save_index(tree.next_id)
        for blob in self.blobs.iterdir():
            if blob.name not in keep:
                blob.unlink()

    def boot(self) -> Tree:
        """The tree as the power cut left it: from the root, every durable entry, each file
        with its last synced bytes. A node reached twice (renamed between two directories that
        were both synced, one before and one after) becomes two: a copy for the second name."""
        index = json.loads((self.root / INDEX).read_text())
        self.next_id = int(index["next_id"])
        self.dirs = {int(k): v for k, v in index["dirs"].items()}
        self.files = {int(k): v for k, v in index["files"].items()}
        seen: set[int] = set()

        def fresh_id(node_id: int) -> int:
            if node_id not in seen:
                seen.add(node_id)
                return node_id
            self.next_id += 1
            return self.next_id - 1

        def build_dir(node_id: int, path: tuple[int, ...]) -> Dir:
            record = self.dirs[node_id]
            node = Dir(fresh_id(node_id), mode=record["mode"], mtime_ns=record["mtime_ns"])
            for name, child_id in record["entries"].items():
                if child_id in self.dirs:
                    if child_id in path:  # a cycle two syncs apart: drop the back edge
                        continue
                    node.entries[name] = build_dir(child_id, (*path, child_id))
                elif child_id in self.files:
                    meta = self.files[child_id]
                    blob = self.blobs / str(child_id)
                    data = bytearray(blob.read_bytes()) if blob.is_file() else bytearray()
                    node.entries[name] = File(
                        fresh_id(child_id), mode=meta["mode"], mtime_ns=meta["mtime_ns"], data=data
                    )
            return node

        tree = Tree(build_dir(ROOT_ID, (ROOT_ID,)), next_id=self.next_id)
        self.format(tree)
        return tree

    # -- the real disk -------------------------------------------------------------------------

    def _save_index(self, next_id: int) -> None:
        self.next_id = max(self.next_id, next_id)
        index = {
            "next_id": self.next_id,
            "dirs": {str(k): v for k, v in self.dirs.items()},
            "files": {str(k): v for k, v in self.files.items()},
        }
        self._write(self.root / INDEX, json.dumps(index).encode())

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
