"""S9 Missing game: a deterministic refusal, the event, and no files created."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S9")
def test_s09_missing_game(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(bravo)

    for _attempt in range(2):  # the same answer every time
        mark = client.mark()
        error = client.send_error("download", game_id="alienswarm")  # in catalog, nobody has it
        assert error["code"] == "no-peers"
        assert error["message"] == "no peers have game alienswarm"
        client.expect("no-peers-have-game", where={"game_id": "alienswarm"}, since=mark)
        client.no_event_since("download-begin", since=mark)
        assert not client.exists("alienswarm")
        assert client.status()["active_operations"] == []

    unknown = client.send_error("download", game_id="does-not-exist")
    assert unknown["code"] == "unknown-game"
    assert not client.exists("does-not-exist")
