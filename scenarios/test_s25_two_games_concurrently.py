"""S25 One client downloads two games at once; each reaches its requested install state."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S25")
def test_s25_one_client_two_games_concurrently(lab: Lab) -> None:
    # 512 KiB/s: the 1 MiB game cannot finish before the second command arrives.
    bravo = lab.peer("bravo", fixture="fixture-bravo", args=("--max-upload-rate", "524288"))
    client = lab.peer("client")
    client.connect(bravo)

    mark = client.mark()
    client.send("download", game_id="bfbc2", install=False)
    client.send("download", game_id="cnctw")  # second command before the first finished
    ops = client.expect(
        "active-operations-changed", where=lambda e: len(e["operations"]) == 2, since=mark
    )
    assert {o["game_id"] for o in ops["operations"]} == {"bfbc2", "cnctw"}
    client.expect("download-finished", where={"game_id": "bfbc2"}, since=mark)
    client.expect("install-finished", where={"game_id": "cnctw"}, since=mark)
    client.no_event_since("download-failed", since=mark)

    assert (client.game("bfbc2") or {}).get("installed") is False
    assert (client.game("cnctw") or {}).get("installed") is True
    for game_id in ("bfbc2", "cnctw"):
        assert_same(client.manifest(game_id), bravo.manifest(game_id), game_id)
