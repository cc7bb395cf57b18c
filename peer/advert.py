"""The local library, as last scanned and as advertised to peers.

The filesystem is the truth (`library.scan_library`); this keeps the last scan, tells the user
when it changed, and turns every change in what we advertise into one numbered `LibraryDelta`
for the peers. A game with an operation in progress is never advertised: no peer may be offered
a root that is being rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from peer.blocking import in_thread
from peer.catalog import Catalog
from peer.install import prepare_games_dir
from peer.library import scan_library
from peer.output import Emit
from peer.protocol import GameSummary, LibraryDelta


def library_delta(
    peer_id: str, rev: int, old: dict[str, GameSummary], new: dict[str, GameSummary]
) -> LibraryDelta:
    """The delta from `old` (revision `rev`) to `new` (revision `rev + 1`)."""
    return LibraryDelta(
        peer_id=peer_id,
        from_rev=rev,
        to_rev=rev + 1,
        added=tuple(new[g] for g in sorted(new.keys() - old.keys())),
        updated=tuple(new[g] for g in sorted(new.keys() & old.keys()) if new[g] != old[g]),
        removed=tuple(sorted(old.keys() - new.keys())),
    )


class LocalLibrary:
    def __init__(
        self,
        games_dir: Path,
        catalog: Catalog,
        emit: Emit,
        hidden: Callable[[], frozenset[str]],
        publish: Callable[[LibraryDelta], None],
    ) -> None:
        self.games_dir = games_dir
        self._catalog = catalog
        self._emit = emit
        self._hidden = hidden
        self._publish = publish
        self.peer_id = ""  # set by the node once the identity is loaded
        self.games: dict[str, GameSummary] = {}
        self.advertised: dict[str, GameSummary] = {}
        self.rev = 0

    def get(self, game_id: str) -> GameSummary | None:
        return self.games.get(game_id)

    def user_rows(self) -> list[dict[str, Any]]:
        """Local roots as the user sees them: with the version our catalog expects."""
        return [
            {**g.to_json(), "catalog_version": self._catalog.get(g.game_id)}
            for g in self.games.values()
        ]

    async def recover(self, fixtures: tuple[str, ...]) -> None:
        """At start: seed `--fixture` games and finish or undo what a crash or power cut
        interrupted in any game root, reporting each (`install-recovered`)."""
        for fields in await in_thread(prepare_games_dir, self.games_dir, fixtures, self._catalog):
            self._emit("install-recovered", **fields)

    def rescan(self, force_event: bool = False) -> None:
        """Read the games root again; report a change to the user and to the peers."""
        games = scan_library(self.games_dir)
        if games != self.games or force_event:
            self.games = games
            self._emit("local-library-changed", games=self.user_rows())
        self.readvertise()

    def readvertise(self) -> None:
        hidden = self._hidden()
        snapshot = {g: s for g, s in self.games.items() if g not in hidden}
        delta = library_delta(self.peer_id, self.rev, self.advertised, snapshot)
        if delta.empty:
            return
        self.rev = delta.to_rev
        self.advertised = snapshot
        self._publish(delta)

    def snapshot(self) -> tuple[int, tuple[GameSummary, ...]]:
        """What a Hello carries: the revision and the games advertised at it."""
        return self.rev, tuple(self.advertised.values())
