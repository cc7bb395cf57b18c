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
from peer.files import open_regular

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
        with open(dest / FIXTURE_PAYLOAD, "wb") as out:
            for archive in archives:
                with os.fdopen(open_regular(archive), "rb") as src:
                    shutil.copyfileobj(src, out, 1024 * 1024)


class UnrarUnpacker:
    """Extracts each archive with an external `unrar x`, in sorted order."""

    def __init__(self, unrar: str) -> None:
        self.unrar = unrar

    def unpack(self, archives: list[Path], dest: Path) -> None:
        for archive in archives:
            cmd = [self.unrar, "x", "-idq", "-o+", "-y", "--", str(archive), f"{dest}/"]
            try:
                result = subprocess.run(cmd, capture_output=True, timeout=3600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PeerError("install-failed", f"cannot run {self.unrar}: {exc}") from None
            if result.returncode != 0:
                detail = result.stderr.decode(errors="replace").strip()[-300:]
                raise PeerError(
                    "install-failed",
                    f"unrar failed on {archive.name} (exit {result.returncode}): {detail}",
                )


def make_unpacker(unrar: str | None) -> Unpacker:
    return UnrarUnpacker(unrar) if unrar else FixtureUnpacker()
