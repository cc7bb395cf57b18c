"""S4 Single-source download, no install: root files arrive, `local/` does not."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S4")
def test_s04_single_source_download_no_install(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(bravo)

    w = client.download("bfbc2", install=False)
    assert w.outcome == "download-finished", w.terminal
    client.expect_sequence(
        "got-game-files",
        "download-begin",
        "download-finished",
        where={"game_id": "bfbc2"},
        since=w.start,
    )
    client.no_event_since("install-begin", since=w.start, until=w.end)

    game = client.game("bfbc2")
    assert game is not None
    assert (game["downloaded"], game["installed"], game["availability"]) == (True, False, "Ready")
    assert not client.exists("bfbc2/local")
    assert client.exists("bfbc2/version.ini") and client.exists("bfbc2/bfbc2.eti")
    assert_same(client.manifest("bfbc2"), bravo.manifest("bfbc2"), "bfbc2 client vs bravo")
