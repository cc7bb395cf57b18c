"""Turning a game root's archives into the contents of `local/`.

Two unpackers behind one interface: the fixture unpacker (no external tools; tests and tiny
fixtures) and the `unrar` unpacker for real RAR `.eti` archives (`--unrar PATH`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from peer.errors import PeerError
from peer.library import open_root_archive

FIXTURE_PAYLOAD = "fixture-payload.txt"


class Unpacker(Protocol):
    def unpack(self, archives: list[Path], dest: Path) -> None:
        """Extract `archives` (already in processing order) into the existing `dest`."""


class FixtureUnpacker:
    """Writes the archives' bytes verbatim to `fixture-payload.txt`.

    One archive: the payload equals it exactly, so S33 can prove install reads the current root
    bytes. Several archives: their concatenation in sorted name order. No archive (a loose-file
    game such as S34's bf1942): `local/` is created empty, because the root files themselves are
    the game and there is nothing to unpack.
    """

    def unpack(self, archives: list[Path], dest: Path) -> None:
        if not archives:
            return
        sources = []
        try:
            for archive in archives:  # every archive opened (no links) before a byte is written
                sources.append(open(_open(archive), "rb"))  # noqa: SIM115
            with open(dest / FIXTURE_PAYLOAD, "wb") as out:
                for src in sources:
                    shutil.copyfileobj(src, out, 1024 * 1024)
        finally:
            for src in sources:
                src.close()


class UnrarUnpacker:
    """Extracts each archive with an external `unrar x`, in sorted order."""

    def __init__(self, unrar: str) -> None:
        self.unrar = unrar

    def unpack(self, archives: list[Path], dest: Path) -> None:
        for archive in archives:
            fd = _open(archive)  # unrar reads this very file: never a link swapped in since
            cmd = [self.unrar, "x", "-idq", "-o+", "-y", "--", f"/dev/fd/{fd}", f"{dest}/"]
            try:
                result = subprocess.run(
                    cmd, capture_output=True, timeout=3600, check=False, pass_fds=(fd,)
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PeerError("install-failed", f"cannot run {self.unrar}: {exc}") from None
            finally:
                os.close(fd)
            if result.returncode != 0:
                detail = result.stderr.decode(errors="replace").strip()[-300:]
                raise PeerError(
                    "install-failed",
                    f"unrar failed on {archive.name} (exit {result.returncode}): {detail}",
                )


def _open(archive: Path) -> int:
    """The archive, opened without following a link; anything else fails the install."""
    try:
        return open_root_archive(archive)
    except PeerError as exc:
        raise PeerError("install-failed", exc.message) from None


def make_unpacker(unrar: str | None) -> Unpacker:
    return UnrarUnpacker(unrar) if unrar else FixtureUnpacker()
