"""The catalog: game ID -> the version this peer considers current.

The receiver's catalog is authoritative: remote roots with another version are neither listed as
downloadable nor used as sources (PEER_CLI_SCENARIOS.md, version-skew contract).

A `--catalog` file is hostile input like any other: it is read by `files.read_small_file` (no
FIFO stalls start-up, no `/dev/zero` is read without end) and every way it can be wrong is a
`bad-catalog` refusal, never a traceback.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from peer.errors import PeerError
from peer.files import read_small_file
from peer.paths import check_game_id

Catalog = dict[str, str]

MAX_CATALOG_BYTES = 4 * 1024 * 1024  # the bundled catalog is a few KiB
MAX_VERSION_CHARS = 64


def load_catalog(path: Path | None = None) -> Catalog:
    """Load `path`, or the bundled catalog when no path is given."""
    if path is None:
        text = resources.files("peer").joinpath("catalog.json").read_text(encoding="utf-8")
        where = "bundled catalog"
    else:
        try:
            text = read_small_file(path, MAX_CATALOG_BYTES).decode("utf-8")
        except (OSError, ValueError) as exc:  # ValueError: too large, or not UTF-8
            raise PeerError("bad-catalog", f"cannot read catalog {path}: {exc}") from exc
        where = str(path)
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise PeerError("bad-catalog", f"{where} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PeerError("bad-catalog", f"{where} must map game IDs to version strings")
    catalog: Catalog = {}
    for game_id, version in raw.items():
        try:
            check_game_id(game_id)
        except PeerError as exc:
            raise PeerError("bad-catalog", f"{where}: {exc.message}") from None
        if not isinstance(version, str) or not 0 < len(version.strip()) <= MAX_VERSION_CHARS:
            why = f"must be a string of 1 to {MAX_VERSION_CHARS} characters"
            raise PeerError("bad-catalog", f"{where}: version of {game_id} {why}")
        catalog[game_id] = version.strip()
    return catalog


def require_catalog_game(catalog: Catalog, game_id: str) -> str:
    """Return the catalog version of `game_id` or refuse with the upstream wording."""
    check_game_id(game_id)
    try:
        return catalog[game_id]
    except KeyError:
        raise PeerError("unknown-game", f"game {game_id} is not in the local catalog") from None
