"""One peer per games dir and per state dir, enforced with an advisory lock.

Two peers on one games dir race each other (a cancel on one deletes the other's files); two on
one state dir share an identity. The lock is `flock` on a file inside the directory, so the
kernel releases it when the process dies, however it dies: no stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from peer.errors import PeerError
from peer.files import made_durable

LOCK_NAME = ".lanpeer.lock"  # starts with a dot: never taken for a game ID


def made(directory: Path) -> Path:
    """`directory`, created if missing (durably: it outlives a power cut, as the identity and
    games written into it must); a refusal if it cannot be (e.g. it is a file)."""
    try:
        existing = next(p for p in (directory, *directory.parents) if p.exists())
        directory.mkdir(parents=True, exist_ok=True)
        made_durable(directory, existing)
    except OSError as exc:
        raise PeerError("bad-path", f"cannot use {directory} as a directory: {exc}") from None
    return directory


def check_apart(state_dir: Path, games_dir: Path) -> None:
    """Neither dir may hold the other: a state dir inside a game root would serve our private
    key as one of its files, and a games dir inside the state dir would mix game IDs with it."""
    state, games = os.path.realpath(state_dir), os.path.realpath(games_dir)
    if os.path.commonpath([state, games]) in (state, games):
        raise PeerError(
            "bad-path", f"the state dir {state_dir} and games dir {games_dir} must not overlap"
        )


class DirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        path = directory / LOCK_NAME
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise PeerError("bad-path", f"cannot use {directory}: {exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise PeerError(
                "dir-in-use", f"{directory} is in use by another lanpeer; one peer per directory"
            ) from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = -1
