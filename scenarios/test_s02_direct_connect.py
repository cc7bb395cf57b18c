"""S2 Direct connect handshake: one remote peer each side, no self entry, libraries exchanged."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S2")
def test_s02_direct_connect(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")

    assert alpha.connect(bravo) == [{"peer_id": bravo.peer_id, "addr": bravo.addr}]
    bravo.expect("peer-connected", where={"peer_id": alpha.peer_id})

    for me, other, games in (
        (alpha, bravo, {"bfbc2", "cnc4", "cnctw", "ggoo"}),
        (bravo, alpha, {"alienswarm", "bf1942", "ggoo"}),
    ):
        peers = me.list_peers()
        assert [p["peer_id"] for p in peers] == [other.peer_id], f"{me.name} peers: {peers}"
        (entry,) = peers
        # The listening address, never the ephemeral QUIC source port of the dialling side.
        assert entry["addr"] == other.addr
        assert {g["game_id"] for g in entry["games"]} == games
        assert entry["game_count"] == len(games)
        assert me.status()["peer_count"] == 1
