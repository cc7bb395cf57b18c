"""S32 Reinstall after uninstall: `local/` comes back from the kept root, with no transfer."""

import pytest

from harness.lab import Lab

TRANSFER = ("got-game-files", "download-begin", "download-chunk-finished", "download-finished")


@pytest.mark.scenario("S32")
def test_s32_reinstall_after_uninstall(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(bravo)
    assert client.download("bfbc2", install=True).outcome == "install-finished"
    payload = client.read("bfbc2/local/fixture-payload.txt")

    client.send("uninstall", game_id="bfbc2")
    client.expect("uninstall-finished", where={"game_id": "bfbc2"})
    assert not client.exists("bfbc2/local")

    mark = client.mark()
    client.send("install", game_id="bfbc2")
    done = client.expect("install-finished", where={"game_id": "bfbc2"}, since=mark)
    for event in TRANSFER:
        client.no_event_since(event, since=mark, until=client.index(done) + 1)
    game = client.game("bfbc2")
    assert game is not None and (game["downloaded"], game["installed"]) == (True, True)
    assert client.read("bfbc2/local/fixture-payload.txt") == payload
