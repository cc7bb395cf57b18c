"""S6 Manual install and uninstall: `local/` comes and goes, the downloaded root stays."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S6")
def test_s06_manual_install_and_uninstall(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(bravo)
    assert client.download("bfbc2", install=False).outcome == "download-finished"
    source = bravo.manifest("bfbc2")

    mark = client.mark()
    client.send("install", game_id="bfbc2")
    client.expect_sequence("install-begin", "install-finished", since=mark)
    game = client.game("bfbc2")
    assert game is not None and (game["downloaded"], game["installed"]) == (True, True)
    assert client.exists("bfbc2/local/fixture-payload.txt")

    mark = client.mark()
    client.send("uninstall", game_id="bfbc2")
    client.expect("uninstall-finished", where={"game_id": "bfbc2"}, since=mark)
    game = client.game("bfbc2")
    assert game is not None
    assert (game["downloaded"], game["installed"], game["availability"]) == (True, False, "Ready")
    assert not client.exists("bfbc2/local")
    assert_same(client.manifest("bfbc2"), source, "root files after uninstall")
