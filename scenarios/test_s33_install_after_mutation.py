"""S33 Install after external root mutation: install reads the root's current bytes."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S33")
def test_s33_install_after_external_root_mutation(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(bravo)
    assert client.download("bfbc2").outcome == "download-finished"

    original = client.read("bfbc2/bfbc2.eti")
    mutated = b"mutated outside lanpeer\n" + original[:1000]
    client.write("bfbc2/bfbc2.eti", mutated)

    mark = client.mark()
    client.send("install", game_id="bfbc2")
    client.expect("install-finished", where={"game_id": "bfbc2"}, since=mark)
    payload = client.read("bfbc2/local/fixture-payload.txt")
    assert payload == mutated and payload != original
