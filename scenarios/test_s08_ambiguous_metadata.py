"""S8 Ambiguous metadata rejection: 1 vs 1 conflicting sizes, so no download and no sentinel."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S8")
def test_s08_ambiguous_metadata_rejection(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    other = lab.peer("other", fixture="fixture-conflict")  # same ggoo version, other size
    client = lab.peer("client")
    client.connect(alpha, other)
    assert client.list_games()["ggoo"]["peer_count"] == 2
    sizes = {
        alpha.manifest("ggoo").files["ggoo.eti"][0],
        other.manifest("ggoo").files["ggoo.eti"][0],
    }
    assert len(sizes) == 2, "the fixture must really conflict"

    w = client.download("ggoo", install=False)
    assert (w.outcome, w.terminal["code"]) == ("download-failed", "ambiguous-metadata"), w.terminal
    for never in ("got-game-files", "download-begin"):
        client.no_event_since(never, since=w.start, until=w.end)
    assert not client.exists("ggoo/version.ini")
    assert client.game("ggoo") is None
    assert client.status()["active_operations"] == []
