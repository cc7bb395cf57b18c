"""The table of known remote peers, keyed by peer id.

Addresses change (a restart binds a new port, S11/S28); identities do not. So every update goes
through the peer id, and a known id at a new address is updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peer.errors import PeerError
from peer.wire import (
    PROTOCOL_VERSION,
    GameSummary,
    LibraryDelta,
    Message,
    apply_delta,
    parse_library,
)


@dataclass(frozen=True)
class Hello:
    """What a peer says about itself in Hello/HelloAck."""

    peer_id: str
    listen_addr: str
    data_port: int
    data_token: str
    library_rev: int
    library: dict[str, GameSummary]

    @classmethod
    def from_json(cls, msg: Message) -> Hello:
        if msg.get("proto") != PROTOCOL_VERSION:
            raise PeerError(
                "incompatible",
                f"peer speaks protocol {msg.get('proto')!r}, we speak {PROTOCOL_VERSION}",
            )
        peer_id, listen_addr = msg.get("peer_id"), msg.get("listen_addr")
        data_port, token, rev = msg.get("data_port"), msg.get("data_token"), msg.get("rev", 0)
        if not (isinstance(peer_id, str) and len(peer_id) == 32):
            raise PeerError("bad-message", "hello needs a 32-hex peer_id")
        if not isinstance(listen_addr, str) or ":" not in listen_addr:
            raise PeerError("bad-message", "hello needs listen_addr HOST:PORT")
        if not isinstance(data_port, int) or not 0 < data_port < 65536:
            raise PeerError("bad-message", "hello needs a data_port")
        if not isinstance(token, str) or not isinstance(rev, int):
            raise PeerError("bad-message", "hello needs data_token and rev")
        return cls(peer_id, listen_addr, data_port, token, rev, parse_library(msg.get("games")))


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


@dataclass
class PeerTable:
    peers: dict[str, RemotePeer] = field(default_factory=dict)

    def upsert(self, hello: Hello, now: float) -> tuple[RemotePeer, bool]:
        """Record `hello`; returns the record and whether the peer id was new."""
        known = self.peers.get(hello.peer_id)
        record = RemotePeer(
            peer_id=hello.peer_id,
            addr=hello.listen_addr,
            data_port=hello.data_port,
            data_token=hello.data_token,
            library_rev=hello.library_rev,
            library=dict(hello.library),
            last_seen=now,
        )
        self.peers[hello.peer_id] = record
        return record, known is None

    def apply_delta(self, peer_id: str, to_rev: int, delta: LibraryDelta) -> RemotePeer | None:
        record = self.peers.get(peer_id)
        if record is None:
            return None
        record.library = apply_delta(record.library, delta)
        record.library_rev = to_rev
        return record

    def remove(self, peer_id: str) -> RemotePeer | None:
        return self.peers.pop(peer_id, None)
