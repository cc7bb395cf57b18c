"""S35 Unknown game ID from a remote peer: not listed, not downloadable, nothing created."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S35")
def test_s35_unknown_game_id_from_remote_peer(lab: Lab) -> None:
    source = lab.peer("source", args=("--fixture", "mystery-game"))
    client = lab.peer("client")
    client.connect(source)
    (entry,) = client.list_peers()
    assert [g["game_id"] for g in entry["games"]] == ["mystery-game"], "it is advertised"

    assert "mystery-game" not in client.list_games()
    for _attempt in range(2):
        error = client.send_error("download", game_id="mystery-game")
        assert error["code"] == "unknown-game"
        assert error["message"] == "game mystery-game is not in the local catalog"
    client.no_event_since("download-begin")
    assert not client.exists("mystery-game")
