"""First-play launch settings (`play`): stamp the player's name and language into the install.

Stamping happens on the first play, not at install, and a marker in the state dir records
that it was *tried*: it is written even when no file matched, and a second play rewrites
nothing (PEER_CLI_SCENARIOS.md, first-play contract). Install clears the marker, so a fresh
`local/` is stamped again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from peer.errors import PeerError
from peer.files import clear_wrong_kind, read_small_file, replace_durably, write_file

ACCOUNT_FILE = "account_name.txt"
LANGUAGE_FILE = "language.txt"
PERSONA_FILE = "SmartSteamEmu.ini"
MARKER = "launch_settings_applied"
MAX_PERSONA_BYTES = 1024 * 1024  # an emulator's settings file is a few KiB

_PERSONA_LINE = re.compile(
    rb"^(?P<head>[ \t]*PersonaName[ \t]*=[ \t]*)(?P<value>[^\r\n]*?)"
    rb"(?P<tail>[ \t]*)(?P<eol>\r?\n|)$"
)


def find_first(root: Path, name: str) -> Path | None:
    """The first regular file called `name` in an alphabetical depth-first walk; no symlinks."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        if entry.is_symlink():
            continue
        if entry.is_file() and entry.name == name:
            return Path(entry.path)
        if entry.is_dir():
            found = find_first(Path(entry.path), name)
            if found is not None:
                return found
    return None


def set_persona_name(text: bytes, username: str) -> bytes | None:
    """Replace the value of the first `PersonaName=` line, keeping its spacing and line ending;
    None when there is no such line."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = _PERSONA_LINE.match(line)
        if match:
            lines[i] = match["head"] + username.encode() + match["tail"] + match["eol"]
            return b"".join(lines)
    return None


def _replace(path: Path, data: bytes) -> None:
    """Replace a file of the install by rename, never writing through a link or into a FIFO."""
    tmp = path.with_name(path.name + ".lanpeer-tmp")
    clear_wrong_kind(tmp, directory=False)
    write_file(tmp, data)
    replace_durably(tmp, path)


def _linked(local_dir: Path) -> bool:
    """Is the install, or the game root holding it, a link? Then it is not ours to stamp."""
    return local_dir.is_symlink() or local_dir.parent.is_symlink() or not local_dir.is_dir()


def apply_launch_settings(
    local_dir: Path, marker: Path, username: str, language: str
) -> dict[str, bool]:
    """Stamp once; report what was written (all False and already_applied on later plays)."""
    if marker.exists():
        return {
            "already_applied": True,
            "account_name_written": False,
            "language_written": False,
            "persona_name_written": False,
        }
    written = {
        "account_name_written": False,
        "language_written": False,
        "persona_name_written": False,
    }
    if _linked(local_dir):  # a symlinked folder is never followed, as in every other reader
        raise PeerError("bad-path", f"{local_dir} is a link or no folder; refusing to stamp it")
    account = find_first(local_dir, ACCOUNT_FILE)
    if account is not None:
        _replace(account, username.encode())
        written["account_name_written"] = True
    lang = find_first(local_dir, LANGUAGE_FILE)
    if lang is not None:
        _replace(lang, language.encode())
        written["language_written"] = True
    persona = find_first(local_dir, PERSONA_FILE)
    if persona is not None:
        try:  # the game's own file: hostile input, read only if small and regular
            text: bytes | None = read_small_file(persona, MAX_PERSONA_BYTES)
        except (OSError, ValueError):
            text = None
        updated = None if text is None else set_persona_name(text, username)
        if updated is not None:
            _replace(persona, updated)
            written["persona_name_written"] = True
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return {"already_applied": False, **written}
