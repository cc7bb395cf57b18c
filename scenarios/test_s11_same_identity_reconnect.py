"""S11 Same identity reconnect: a restart on a new port updates the one existing entry."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S11")
def test_s11_same_identity_reconnect(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    alpha.connect(bravo)
    old_id, old_addr = bravo.peer_id, bravo.addr

    bravo.restart()  # same state dir, fresh process, new ephemeral port
    assert bravo.peer_id == old_id, "identity survives the restart"
    assert bravo.addr != old_addr, "the restarted peer listens on a new port"

    alpha.connect(bravo)
    peers = alpha.list_peers()
    assert [(p["peer_id"], p["addr"]) for p in peers] == [(old_id, bravo.addr)]
    assert peers[0]["game_count"] == 4
    assert alpha.list_games()["cnctw"]["peer_count"] == 1
