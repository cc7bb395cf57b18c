"""S10 Shutdown and goodbye: a peer that leaves (or dies) disappears with its games.

A goodbye removes the peer at once. A peer killed without goodbye is declared lost after
`--stale-timeout` seconds of silence (pings go out after `--ping-interval` idle seconds); the
wait below is bounded by exactly that documented time plus one ping round.
"""

import pytest

from harness.lab import Lab

PING, STALE = 1.0, 4.0
LIVENESS = ("--ping-interval", str(PING), "--stale-timeout", str(STALE))


@pytest.mark.scenario("S10")
def test_s10_shutdown_and_goodbye_cleanup(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha", args=LIVENESS)
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    charlie = lab.peer("charlie", fixture="fixture-conflict")
    alpha.connect(bravo, charlie)
    assert {p["peer_id"] for p in alpha.list_peers()} == {bravo.peer_id, charlie.peer_id}
    assert alpha.list_games()["bfbc2"]["peer_count"] == 1

    mark = alpha.mark()
    bravo.send("shutdown")
    lost = alpha.expect("peer-lost", where={"peer_id": bravo.peer_id}, since=mark, timeout=5)
    assert lost["reason"] == "goodbye"
    assert set(lost["removed_games"]) == {"bfbc2", "cnc4", "cnctw", "ggoo"}
    assert [p["peer_id"] for p in alpha.list_peers()] == [charlie.peer_id]
    rows = alpha.list_games()
    for gone in ("bfbc2", "cnctw"):
        assert gone not in rows, rows[gone]
    assert rows["ggoo"]["peers"] == rows["cnc4"]["peers"] == [charlie.peer_id]

    mark = alpha.mark()
    charlie.kill()  # no goodbye: only liveness can notice
    lost = alpha.expect(
        "peer-lost", where={"peer_id": charlie.peer_id}, since=mark, timeout=STALE + 2 * PING + 2
    )
    assert lost["reason"] in ("timeout", "connection-closed")
    assert alpha.list_peers() == []
    assert set(alpha.list_games()) == {"alienswarm", "bf1942", "ggoo"}
    assert all(r["peer_count"] == 0 for r in alpha.list_games().values())
