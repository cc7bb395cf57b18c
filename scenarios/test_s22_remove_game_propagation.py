"""S22 Remove-game propagation: a vanished root disappears remotely, the peer stays."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S22")
def test_s22_remove_game_propagation(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    alpha.connect(bravo)
    assert alpha.list_games()["cnc4"]["peer_count"] == 1

    mark = alpha.mark()
    bravo.remove("cnc4")
    alpha.expect("peer-library-changed", where=lambda e: e["removed"] == ["cnc4"], since=mark)
    assert "cnc4" not in alpha.list_games()
    assert [p["peer_id"] for p in alpha.list_peers()] == [bravo.peer_id]
    alpha.no_event_since("peer-lost", since=mark)
    alpha.no_event_since("peer-connected", since=mark)
