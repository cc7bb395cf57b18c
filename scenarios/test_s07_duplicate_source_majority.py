"""S7 Duplicate-source majority download: both peers vote and serve, the game commits once."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S7")
def test_s07_duplicate_source_majority_download(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(alpha, bravo)
    assert client.list_games()["ggoo"]["peer_count"] == 2

    w = client.download("ggoo", install=False)
    assert w.outcome == "download-finished", w.terminal
    start, end = w.start, w.end

    files = client.events("got-game-files", since=start, until=end)
    assert len(files) == 1
    assert {s["peer_addr"] for s in files[0]["sources"]} == {alpha.addr, bravo.addr}
    assert files[0]["rejected_sources"] == []
    assert len(client.events("download-finished", since=start, until=end)) == 1  # commits once
    client.no_event_since("download-failed", since=start, until=end)
    client.no_event_since("download-chunk-failed", since=start, until=end)

    chunks = client.events("download-chunk-finished", since=start, until=end)
    keys = [(c["path"], c["offset"]) for c in chunks]
    assert len(keys) == len(set(keys)), f"a chunk was fetched twice: {keys}"
    assert {c["peer_addr"] for c in chunks} == {alpha.addr, bravo.addr}, "both peers serve"

    game = client.game("ggoo")
    assert game is not None and (game["downloaded"], game["installed"]) == (True, False)
    assert_same(client.manifest("ggoo"), alpha.manifest("ggoo"), "ggoo vs alpha")
    assert_same(client.manifest("ggoo"), bravo.manifest("ggoo"), "ggoo vs bravo")
