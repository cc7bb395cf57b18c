"""`list-games` rows: local state joined with what catalog-version ready peers offer.

Only a remote root that is Ready and whose version equals *our* catalog version counts, votes or
serves (version-skew contract, S15-S17, S36); local-only installs are never sources (S40).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from peer.catalog import Catalog
from peer.mesh import RemotePeer
from peer.protocol import READY, GameSummary


def is_source(peer: RemotePeer, game_id: str, catalog: Catalog) -> bool:
    game = peer.library.get(game_id)
    return (
        game is not None
        and game_id in catalog
        and game.availability == READY
        and game.downloaded
        and game.version == catalog[game_id]
    )


def sources_for(game_id: str, catalog: Catalog, peers: Iterable[RemotePeer]) -> list[RemotePeer]:
    """Eligible sources, sorted by address so retry order is deterministic (S42)."""
    return sorted((p for p in peers if is_source(p, game_id, catalog)), key=lambda p: p.addr)


def game_rows(
    catalog: Catalog, local: dict[str, GameSummary], peers: list[RemotePeer]
) -> list[dict[str, Any]]:
    rows = []
    for game_id in sorted(catalog):
        sources = sources_for(game_id, catalog, peers)
        mine = local.get(game_id)
        if mine is None and not sources:
            continue
        rows.append(
            {
                "game_id": game_id,
                "eti_game_version": catalog[game_id],
                "peer_count": len(sources),
                "peers": [p.peer_id for p in sources],
                "downloaded": bool(mine and mine.downloaded),
                "installed": bool(mine and mine.installed),
                "availability": mine.availability if mine else None,
                "local_version": mine.version if mine else None,
            }
        )
    return rows
