"""Name and path rules that keep every file operation inside the games root.

Every name that arrives from stdin or from a remote peer passes through here before it touches
the filesystem.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from peer.errors import PeerError

SENTINEL = "version.ini"
SENTINEL_TMP = ".version.ini.tmp"
LOCAL_DIR = "local"
STAGING_DIR = ".local.installing"
BACKUP_DIR = ".local.backup"  # an update's old install, parked until the new one is in place
REMOVING_DIR = ".local.removing"  # an uninstalled install, being deleted (never restored)
OWNED_MARKER = ".lanspread_owned"
PROGRESS = ".lanpeer-progress"  # a download's verified chunks, for resuming it (transfer.resume)
SCRATCH_DIR = ".lanpeer-endgame"  # end-game duplicates land here, never in the game's files
ARCHIVE_SUFFIX = ".eti"

# Names inside a game root that belong to the peer's own bookkeeping and are never transferred.
RESERVED_ROOT_NAMES = frozenset(
    {
        LOCAL_DIR,
        STAGING_DIR,
        BACKUP_DIR,
        REMOVING_DIR,
        SENTINEL_TMP,
        PROGRESS,
        SCRATCH_DIR,
        ".lanspread.json",
        ".lanspread",
    }
)

# `\Z`, not `$`: `$` also matches before a trailing newline.
GAME_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}\Z"
_GAME_ID = re.compile(GAME_ID_PATTERN)


def check_game_id(game_id: object) -> str:
    """A game ID is one lowercase path component: never `.`, `..`, a slash or empty."""
    if not isinstance(game_id, str) or not _GAME_ID.match(game_id) or game_id in {".", ".."}:
        raise PeerError("bad-game-id", f"invalid game id {game_id!r}")
    if ".." in game_id:
        raise PeerError("bad-game-id", f"invalid game id {game_id!r}")
    return game_id


def check_relative_path(path: object, reserved: bool = True) -> str:
    """Validate a file path inside a game root as sent on the wire (POSIX, relative).

    Refuses absolute paths, `..`, empty or `.` components, backslashes, NUL, names that are not
    UTF-8 (the protocol cannot carry them), and anything under
    the reserved names (`local/`, staging, backup) unless `reserved` is off (paths inside an
    archive, which land under `local/`), so a remote peer can neither read nor write outside
    the transferable part of a game root.
    """
    if not isinstance(path, str) or not path or len(path) > 4096:
        raise PeerError("bad-path", f"invalid path {path!r}")
    if "\\" in path or "\x00" in path or path.startswith("/"):
        raise PeerError("bad-path", f"invalid path {path!r}")
    try:  # a name read from disk whose bytes are not UTF-8 holds surrogates the wire cannot carry
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PeerError("bad-path", f"path {path!a} is not valid UTF-8") from None
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise PeerError("bad-path", f"invalid path {path!r}")
    if reserved and parts[0] in RESERVED_ROOT_NAMES:
        raise PeerError("bad-path", f"path {path!r} is reserved and never transferred")
    return str(PurePosixPath(path))


def check_file_list(paths: list[str]) -> None:
    """A file list a receiver can write: unique paths, and no path both a file and a folder."""
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate path in file list")
    parents = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    clash = parents.intersection(paths)
    if clash:
        raise ValueError(f"path {min(clash)!r} is both a file and a directory")
