"""A download on our own disk: the root prepared, chunks copied and checked, the sentinel
committed last, the progress record saved and loaded."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from peer import digest
from peer.errors import PeerError
from peer.files import (
    clear_wrong_kind,
    fsync_dir,
    fsync_file,
    is_kind,
    open_regular,
    read_small_file,
    remove_any,
    sync_names,
    write_all,
    write_file,
)
from peer.install import KEPT_ON_CANCEL, remove_tree
from peer.paths import PROGRESS, RESERVED_ROOT_NAMES, SCRATCH_DIR, SENTINEL, SENTINEL_TMP
from peer.protocol import FileDescriptor
from peer.transfer.plan import Chunk
from peer.transfer.resume import (
    MAX_RECORD,
    Progress,
    claimed_chunks,
    decode_progress,
    encode_progress,
    fingerprint,
)

MIB = 1024 * 1024


def fsync_path(path: Path) -> None:
    """fsync a file we wrote or a root's directory, never blocking on what else has its name."""
    if is_kind(path, directory=True):
        fsync_dir(path)
    else:
        fsync_file(path)


def target_path(root: Path, rel: str) -> Path:
    """Where a descriptor path is written; the sentinel is staged under a temporary name."""
    target = root / (SENTINEL_TMP if rel == SENTINEL else rel)
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(target.parent), real_root]) != real_root:
        raise PeerError("bad-path", f"path {rel!r} would leave the game root")
    return target


def prepare_root(root: Path, files: tuple[FileDescriptor, ...]) -> None:
    """Un-commit any old sentinel, clear what the new file set lacks, then create every file
    at its final size, so the committed root holds exactly the validated files."""
    if root.is_symlink():
        raise PeerError("bad-path", f"{root.name} is a symlink; refusing to write through it")
    root.mkdir(parents=True, exist_ok=True)
    remove_any(root / SENTINEL)  # whatever kind of thing it is, even a directory
    # The staged sentinel is one of the download's chunks: a resume keeps it as it keeps the
    # others (re-hashed before it counts), or the record would claim a chunk we deleted.
    for own in (*BOOKKEEPING, SENTINEL_TMP):
        clear_wrong_kind(root / own, directory=False)
    remove_any(root / SCRATCH_DIR)  # an end game's leftovers (a kill mid-copy): never trusted
    _prune(root, {SENTINEL_TMP if f.path == SENTINEL else f.path for f in files})
    for f in files:
        target = target_path(root, f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_dir():
            raise PeerError("bad-path", f"{f.path} exists here and is not a regular file")
        fd = open_regular(target, os.O_WRONLY | os.O_CREAT)  # a FIFO here must not hang us
        try:
            os.ftruncate(fd, f.size)
        finally:
            os.close(fd)
    # Every name made above must outlive a power cut before a chunk written under it is
    # recorded as verified: the root's folders, and the root in the games dir.
    sync_names(root)
    fsync_dir(root.parent)


# Our own files in a root; anything else at these names (a directory, a FIFO, a link) is removed
# before use rather than failing every download of the game until a person removes it.
BOOKKEEPING = (PROGRESS, PROGRESS + ".tmp")


KEPT_NAMES = KEPT_ON_CANCEL | RESERVED_ROOT_NAMES  # top-level names a download never touches


def _prune(root: Path, wanted: set[str]) -> None:
    """Remove every file, link and folder the new version does not have (an update must not
    keep serving the old version's files), keeping `local/` and the names of external tools."""
    parents = {"/".join(p.split("/")[:i]) for p in wanted for i in range(1, p.count("/") + 1)}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        if not prefix:
            dirnames[:] = [d for d in dirnames if d not in KEPT_NAMES]
            filenames = [f for f in filenames if f not in KEPT_NAMES]
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or prefix + name not in parents:
                remove_tree(Path(full))
                dirnames.remove(name)
        for name in filenames:
            full = os.path.join(dirpath, name)
            # A wanted path that is not a regular file (a FIFO, a socket, a link) is replaced.
            if prefix + name not in wanted or not os.path.isfile(full) or os.path.islink(full):
                os.unlink(full)


def commit_root(root: Path, files: tuple[FileDescriptor, ...]) -> None:
    """Make the data durable, then publish the sentinel: the download's commit point. The
    progress record goes after it (a crash in between leaves a complete game and a stale
    record nothing reads)."""
    for f in files:
        if f.path != SENTINEL:
            fsync_path(target_path(root, f.path))
    tmp = root / SENTINEL_TMP
    fsync_path(tmp)
    os.replace(tmp, root / SENTINEL)
    fsync_path(root)
    remove_any(root / PROGRESS)
    remove_any(root / SCRATCH_DIR)


def scratch_path(root: Path, index: int) -> Path:
    """Where an end-game duplicate of chunk number `index` is received."""
    return root / SCRATCH_DIR / str(index)


def open_scratch(path: Path) -> int:
    """A fresh, empty scratch file (the folder made if need be, never through a link)."""
    path.parent.mkdir(exist_ok=True)
    if path.parent.is_symlink() or not path.parent.is_dir():
        raise OSError(errno.ENOTDIR, f"{path.parent.name} is not a folder")
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)


def copy_verified(scratch: int, target: int, chunk: Chunk) -> None:
    """Copy a chunk verified in `scratch` (from its start) to its place in `target`, hashing
    what is read back: the scratch file must still hold the bytes that were verified."""
    h = digest.hasher()
    done = 0
    while done < chunk.length:
        block = os.pread(scratch, min(MIB, chunk.length - done), done)
        if not block:
            break
        h.update(block)
        write_all(target, block, chunk.offset + done)
        done += len(block)
    if done != chunk.length or h.hexdigest() != chunk.digest:
        raise OSError(errno.EIO, f"the scratch copy of {chunk.path}@{chunk.offset} changed")


def load_progress(root: Path) -> Progress | None:
    """The root's progress record, or None (none, unreadable, or not a small regular file)."""
    try:
        return decode_progress(read_small_file(root / PROGRESS, MAX_RECORD))
    except (OSError, ValueError):
        return None


def save_progress(root: Path, progress: Progress) -> None:
    """Replace the record atomically and durably: a kill leaves the old record or the new."""
    tmp = root / (PROGRESS + ".tmp")
    clear_wrong_kind(tmp, directory=False)
    write_file(tmp, encode_progress(progress))
    clear_wrong_kind(root / PROGRESS, directory=False)  # a directory there would refuse the rename
    os.replace(tmp, root / PROGRESS)
    fsync_path(root)


def verified_on_disk(root: Path, chunks: list[Chunk]) -> list[bool]:
    """Whether each chunk's bytes on disk still hash to its descriptor (flat memory)."""
    verdicts = []
    for chunk in chunks:
        h = digest.hasher()
        try:
            with os.fdopen(open_regular(target_path(root, chunk.path)), "rb") as f:
                f.seek(chunk.offset)
                remaining = chunk.length
                while remaining and (block := f.read(min(MIB, remaining))):
                    h.update(block)
                    remaining -= len(block)
        except OSError:
            remaining = -1
        verdicts.append(remaining == 0 and h.hexdigest() == chunk.digest)
    return verdicts


def resume_root(
    root: Path, game_id: str, files: tuple[FileDescriptor, ...], chunks: list[Chunk]
) -> Progress:
    """Prepare the root and start its progress record: the chunks an earlier attempt recorded
    for these very descriptors and that still hash right on disk; nothing else is trusted."""
    prepare_root(root, files)  # refuses a linked root before anything is read through it
    record = load_progress(root)
    descriptors = fingerprint(game_id, files)
    claimed = claimed_chunks(record, game_id, descriptors, chunks)
    verdicts = verified_on_disk(root, [chunks[i] for i in claimed])
    progress = Progress(
        game_id, descriptors, frozenset(i for i, ok in zip(claimed, verdicts, strict=True) if ok)
    )
    save_progress(root, progress)
    return progress
