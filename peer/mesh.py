"""The table of known remote peers, keyed by peer id, and the liveness rule (pure).

Addresses change (a restart binds a new port, S11/S28); identities do not. So every update goes
through the peer id, and a known id at a new address is updated in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from peer.protocol import GameSummary, Hello, HelloAck, LibraryDelta


def apply_delta(library: dict[str, GameSummary], delta: LibraryDelta) -> dict[str, GameSummary]:
    result = {k: v for k, v in library.items() if k not in delta.removed}
    for game in (*delta.added, *delta.updated):
        result[game.game_id] = game
    return result


@dataclass
class RemotePeer:
    peer_id: str
    addr: str
    data_port: int
    data_token: str
    library_rev: int
    library: dict[str, GameSummary]
    last_seen: float

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "addr": self.addr,
            "game_count": len(self.library),
            "games": [g.to_json() for g in sorted(self.library.values(), key=lambda g: g.game_id)],
        }


Sync = Literal["applied", "behind", "moot"]


@dataclass(frozen=True)
class Changes:
    """Game ids of a peer's library that a refresh added, changed or removed."""

    added: list[str]
    updated: list[str]
    removed: list[str]

    @classmethod
    def of_delta(cls, delta: LibraryDelta) -> Changes:
        ids = [g.game_id for g in delta.added], [g.game_id for g in delta.updated]
        return cls(*ids, list(delta.removed))


@dataclass
class PeerTable:
    peers: dict[str, RemotePeer] = field(default_factory=dict)

    def upsert(self, intro: Hello | HelloAck, now: float) -> tuple[RemotePeer, bool]:
        """Record a Hello or HelloAck; returns the record and whether the peer id was new."""
        known = self.peers.get(intro.peer_id)
        record = RemotePeer(
            peer_id=intro.peer_id,
            addr=intro.listen_addr,
            data_port=intro.data_port,
            data_token=intro.data_token,
            library_rev=intro.rev,
            library={g.game_id: g for g in intro.games},
            last_seen=now,
        )
        self.peers[intro.peer_id] = record
        return record, known is None

    def apply_delta(self, peer_id: str, delta: LibraryDelta) -> Sync:
        """Apply a delta only onto the revision it was made from. A delta from further on means
        one was lost (its link closed under it) or overtook another: the whole library must be
        asked again. A delta from before the revision held came late and is moot."""
        record = self.peers.get(peer_id)
        if record is None or delta.from_rev < record.library_rev:
            return "moot"
        if delta.from_rev > record.library_rev:
            return "behind"
        record.library = apply_delta(record.library, delta)
        record.library_rev = delta.to_rev
        return "applied"

    def refresh(self, intro: Hello | HelloAck) -> Changes | None:
        """Take a known process's whole library from a newer introduction of its own (a second
        Hello, or a link both ends drop for the other); what changed, or None if nothing newer."""
        record = self.peers.get(intro.peer_id)
        if record is None or intro.rev <= record.library_rev:
            return None
        old, new = record.library, {g.game_id: g for g in intro.games}
        record.library, record.library_rev = new, intro.rev
        return Changes(
            added=[g for g in new if g not in old],
            updated=[g for g in new if g in old and new[g] != old[g]],
            removed=[g for g in old if g not in new],
        )

    def remove(self, peer_id: str) -> RemotePeer | None:
        return self.peers.pop(peer_id, None)


Meeting = Literal["new", "same-process", "restart-or-clone", "self", "clone-of-self"]


def meeting(
    intro: Hello | HelloAck, own_peer_id: str, own_token: str, known: RemotePeer | None
) -> Meeting:
    """Who an introduction (already proven to come from the holder of its id's key) is from.

    A data token is drawn afresh by every process, so it tells one process from another that
    holds the same key: another link of a known process ("same-process"), a restart or a second
    process started from a copied state dir ("restart-or-clone": only the old link's silence
    tells them apart), ourselves through another address ("self"), or a copy of us.
    """
    if intro.peer_id == own_peer_id:
        return "self" if intro.data_token == own_token else "clone-of-self"
    if known is None:
        return "new"
    return "same-process" if intro.data_token == known.data_token else "restart-or-clone"


def keeps_new_link(own_id: str, remote_id: str, old_ours: bool, new_ours: bool) -> bool:
    """Two live links to one process (both ends dialled at once, as after a cut both redial):
    whether to keep the new one. Both ends keep the link dialled by the smaller peer id, since
    each sees the same two dialers, so they settle on one link instead of each closing the one
    the other kept. Two links from one dialer: the newer wins (its old one is stale)."""
    if old_ours == new_ours:
        return True
    dialler_of_new = own_id if new_ours else remote_id
    return dialler_of_new == min(own_id, remote_id)


@dataclass(frozen=True)
class Liveness:
    """What the liveness rule asks for at one moment."""

    ping: tuple[str, ...]
    drop: tuple[str, ...]


def liveness(
    now: float, peers: Iterable[RemotePeer], ping_interval: float, stale_timeout: float
) -> Liveness:
    """Peers silent for longer than `stale_timeout` are dropped; idle ones are pinged.

    Any message from a peer refreshes its `last_seen`, so a peer that answers pings lives on.
    """
    ping: list[str] = []
    drop: list[str] = []
    for peer in peers:
        idle = now - peer.last_seen
        if idle > stale_timeout:
            drop.append(peer.peer_id)
        elif idle >= ping_interval:
            ping.append(peer.peer_id)
    return Liveness(tuple(ping), tuple(drop))


# Redial: a peer lost without a Goodbye (silent past the stale timeout, or its link closed
# under it) is a cable pulled or a lid closed, not a peer that left; as Syncthing redials its
# known devices, we dial its last address again: after 1 s, 2 s, 4 s, then every 5 s, until it
# is back (by our dial or its own). A Goodbye means it left on purpose: no redial.
REDIAL_REASONS = frozenset({"timeout", "connection-closed"})
REDIAL_FIRST = 1.0
REDIAL_MAX = 5.0


def redial_delay(attempt: int) -> float:
    """Seconds to wait before redial `attempt` (0-based) of a lost peer."""
    return min(REDIAL_FIRST * 2.0 ** min(attempt, 16), REDIAL_MAX)
