"""S20 Receiver write failure: a full /games fails cleanly, and succeeds once space is freed.

The client's /games is a 32 MiB tmpfs holding a 16 MiB filler, so the 20 MiB game cannot fit;
after the filler is deleted the same download must succeed (no stuck state after a full disk).
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

pytestmark = pytest.mark.requires_docker(
    reason="needs a size-limited tmpfs /games, which only the Docker backend provides",
)


@pytest.mark.scenario("S20")
def test_s20_receiver_write_failure(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-lowdisk")
    client = lab.peer("client", games_tmpfs="32m")
    rc, out = client.run("fallocate", "-l", "16M", "/games/filler")
    assert rc == 0, out
    client.connect(source)

    failed = client.download("cod5", install=False).terminal
    assert failed["event"] == "download-failed", failed
    assert failed["code"] == "write-failed" and "No space left" in failed["reason"], failed
    assert not client.exists("cod5/version.ini")
    assert client.game("cod5") is None
    assert client.status()["active_operations"] == []

    client.run("rm", "/games/filler")
    assert client.download("cod5", install=False).outcome == "download-finished"
    assert_same(client.manifest("cod5"), source.manifest("cod5"), "cod5 after freeing space")
