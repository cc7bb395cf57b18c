"""Scanning a games root into per-game states.

The filesystem is the source of truth: a root `version.ini` means downloaded, a `local/`
directory means installed. Scanning is a pure read; the runtime decides when to rescan.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from peer.errors import PeerError
from peer.files import open_regular, read_small_file
from peer.paths import ARCHIVE_SUFFIX, LOCAL_DIR, SENTINEL, check_game_id
from peer.protocol import LOCAL_ONLY, READY, GameSummary

# A version is one short token (upstream writes an 8-digit date); anything else is not one.
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
MAX_SENTINEL_BYTES = 256


def read_sentinel(game_root: Path) -> str | None:
    """The root `version.ini`'s version, or None when there is no well-formed one.

    The sentinel is hostile input like any file in a root: it is opened without following a
    link and without blocking (a FIFO must not stall the peer), read only if it is a small
    regular file, and taken only if it holds one well-formed version. Anything else leaves the
    game not downloaded: not Ready, never advertised or served, never an error.
    """
    try:
        version = read_small_file(game_root / SENTINEL, MAX_SENTINEL_BYTES).decode().strip()
    except (OSError, ValueError):  # ValueError covers UnicodeDecodeError
        return None
    return version if VERSION.fullmatch(version) else None


def root_archives(game_root: Path) -> list[Path]:
    """Root-level `.eti` archives in the sorted order installs process them (S47).

    Only regular files count, never a link (to a file or anything else): like downloads, every
    reader of a root (listing, streaming, install) keeps to the bytes inside it.
    """
    if game_root.is_symlink():
        return []
    try:
        entries = sorted(os.scandir(game_root), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            if entry.name.endswith(ARCHIVE_SUFFIX) and entry.is_file(follow_symlinks=False):
                found.append(game_root / entry.name)
        except OSError:
            continue
    return found


def open_root_archive(archive: Path) -> int:
    """A descriptor of `archive` if it is a regular file, never through a link.

    Readers hand the descriptor on (`unrar` reads `/dev/fd/N`), so a root archive swapped for
    a link after `root_archives` listed it is still refused, not followed.
    """
    try:
        return open_regular(archive)
    except OSError as exc:
        raise PeerError("not-servable", f"{archive.name} cannot be opened: {exc}") from None


def _root_size(game_root: Path) -> int:
    total = 0
    try:
        entries = list(os.scandir(game_root))
    except OSError:
        return 0
    for entry in entries:
        if entry.name == LOCAL_DIR or entry.name.startswith("."):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def scan_game(games_dir: Path, game_id: str) -> GameSummary | None:
    """The state of one game root, or None when the directory holds no game yet.

    A root with neither a sentinel nor `local/` (an empty dir, or the leftovers of a failed
    download) is not a game: it must never look complete.
    """
    root = games_dir / game_id
    if not root.is_dir() or root.is_symlink():
        return None
    version = read_sentinel(root)
    downloaded = version is not None
    local = root / LOCAL_DIR
    installed = local.is_dir() and not local.is_symlink()  # a linked `local/` is not ours
    if not downloaded and not installed:
        return None
    return GameSummary(
        game_id=game_id,
        version=version,
        downloaded=downloaded,
        installed=installed,
        availability=READY if downloaded else LOCAL_ONLY,
        size=_root_size(root) if downloaded else 0,
    )


def scan_library(games_dir: Path) -> dict[str, GameSummary]:
    """Every game under `games_dir`, keyed by game ID; names that are not game IDs are skipped."""
    games: dict[str, GameSummary] = {}
    try:
        names = sorted(os.listdir(games_dir))
    except OSError:
        return games
    for name in names:
        try:
            check_game_id(name)
        except PeerError:
            continue
        state = scan_game(games_dir, name)
        if state is not None:
            games[name] = state
    return games
