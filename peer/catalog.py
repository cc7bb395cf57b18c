"""The catalog: game ID -> the version this peer considers current.

The receiver's catalog is authoritative: remote roots with another version are neither listed as
downloadable nor used as sources (PEER_CLI_SCENARIOS.md, version-skew contract).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from peer.errors import PeerError
from peer.paths import check_game_id

Catalog = dict[str, str]


def load_catalog(path: Path | None = None) -> Catalog:
    """Load `path`, or the bundled catalog when no path is given."""
    if path is None:
        text = resources.files("peer").joinpath("catalog.json").read_text(encoding="utf-8")
        where = "bundled catalog"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PeerError("bad-catalog", f"cannot read catalog {path}: {exc}") from exc
        where = str(path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PeerError("bad-catalog", f"{where} is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise PeerError("bad-catalog", f"{where} must map game IDs to version strings")
    catalog: Catalog = {}
    for game_id, version in raw.items():
        check_game_id(game_id)
        if not isinstance(version, str) or not version.strip():
            raise PeerError("bad-catalog", f"{where}: version of {game_id} must be a string")
        catalog[game_id] = version.strip()
    return catalog


def require_catalog_game(catalog: Catalog, game_id: str) -> str:
    """Return the catalog version of `game_id` or refuse with the upstream wording."""
    check_game_id(game_id)
    try:
        return catalog[game_id]
    except KeyError:
        raise PeerError("unknown-game", f"game {game_id} is not in the local catalog") from None
