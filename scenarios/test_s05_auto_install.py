"""S5 Auto-install download: download, then install, ends downloaded and installed."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S5")
def test_s05_auto_install_download(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(bravo)

    start = client.mark()
    client.send("download", game_id="cnctw")  # install defaults to true
    client.expect_sequence(
        "download-begin",
        "download-finished",
        "install-begin",
        "install-finished",
        where={"game_id": "cnctw"},
        since=start,
    )
    client.no_event_since("download-failed", since=start)
    client.no_event_since("install-failed", since=start)

    game = client.game("cnctw")
    assert game is not None
    assert (game["downloaded"], game["installed"], game["availability"]) == (True, True, "Ready")
    # The fixture unpacker's payload is the root archive, byte for byte.
    assert client.read("cnctw/local/fixture-payload.txt") == bravo.read("cnctw/cnctw.eti")
    assert_same(client.manifest("cnctw"), bravo.manifest("cnctw"), "cnctw root")
    assert client.status()["active_operations"] == []
