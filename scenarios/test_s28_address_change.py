"""S28 Address change without identity change, at unit level (as upstream covers it).

A known peer id heard at a new address updates its one record in place and keeps its library.
The live variant, a restart on a new port, is S11.
"""

import pytest

from peer.mesh import PeerTable
from peer.protocol import PROTOCOL_VERSION, GameSummary, Hello

GAMES = {"cnc4": GameSummary("cnc4", "20250301", True, False, "Ready", 10)}


def hello(addr: str) -> Hello:
    return Hello(PROTOCOL_VERSION, "0" * 31 + "b", addr, 4001, "token", 3, tuple(GAMES.values()))


@pytest.mark.scenario("S28")
def test_s28_address_change_keeps_identity_and_library() -> None:
    table = PeerTable()
    first, new = table.upsert(hello("10.0.0.3:4000"), now=1.0)
    assert new
    again, new = table.upsert(hello("10.0.0.3:5000"), now=2.0)
    assert not new and again.peer_id == first.peer_id
    assert list(table.peers) == [first.peer_id]
    assert table.peers[first.peer_id].addr == "10.0.0.3:5000"
    assert table.peers[first.peer_id].library == GAMES
