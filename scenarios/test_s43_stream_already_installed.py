"""S43 A second streamed install of an installed game is refused and changes nothing.

The command is accepted (the game is known and idle), then the operation fails with
`already-installed` before a transfer begins; the existing local-only install stays as it was.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S43")
def test_s43_already_installed_streamed_install_rejected(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo", args=("--unrar", lab.backend.unrar))
    client = lab.peer("client")
    client.connect(bravo)
    first = client.stream_install("cnctw")
    assert first.outcome == "install-finished", first.terminal
    installed = client.manifest("cnctw", skip=())
    assert installed.files and all(p.startswith("local/") for p in installed.files), installed
    before = client.game("cnctw")
    assert before is not None and before["availability"] == "LocalOnly", before

    second = client.stream_install("cnctw")
    assert (second.outcome, second.terminal["code"]) == ("download-failed", "already-installed")
    for success in (
        "download-begin",
        "download-chunk-finished",
        "download-finished",
        "install-begin",
        "install-finished",
    ):
        client.no_event_since(success, since=second.start, until=second.end)
    assert client.status()["active_operations"] == []
    assert client.game("cnctw") == before, "still downloaded=false, installed, LocalOnly"
    assert_same(client.manifest("cnctw", skip=()), installed, "the existing install")
