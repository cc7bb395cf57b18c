"""S21 Add-game propagation: a new root (dropped in or downloaded) reaches connected peers."""

import pytest

from harness.lab import Lab
from peer.catalog import load_catalog


@pytest.mark.scenario("S21")
def test_s21_add_game_propagation(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    alpha.connect(bravo)
    assert "cod5" not in alpha.list_games()

    # An external drop: archive first, sentinel last, as a copy tool finishing would.
    mark = alpha.mark()
    bravo.write("cod5/cod5.eti", b"dropped in by hand")
    bravo.write("cod5/version.ini", f"{load_catalog()['cod5']}\n".encode())
    alpha.expect("peer-library-changed", where=lambda e: "cod5" in e["added"], since=mark)
    row = alpha.list_games()["cod5"]
    assert (row["peer_count"], row["peers"]) == (1, [bravo.peer_id])

    # A completed download: bravo learns alpha's new game the same way.
    bmark = bravo.mark()
    assert alpha.download("bfbc2").outcome == "download-finished"
    bravo.expect(
        "peer-library-changed",
        where=lambda e: e["peer_id"] == alpha.peer_id and "bfbc2" in e["added"],
        since=bmark,
    )
    assert set(bravo.list_games()["bfbc2"]["peers"]) == {alpha.peer_id}
    for peer in (alpha, bravo):
        peer.no_event_since("peer-lost", since=0)
        assert len(peer.list_peers()) == 1
    alpha.no_event_since("peer-connected", since=mark)  # no reconnect was needed
