"""S36 Catalog singleton beats a stale majority: four stale peers add no row, vote or byte."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S36")
def test_s36_catalog_singleton_beats_stale_majority(lab: Lab) -> None:
    current = lab.peer("current", fixture="fixture-bravo")
    stale = [lab.peer(f"stale{i}", fixture="fixture-stale-a") for i in range(4)]
    client = lab.peer("client")
    client.connect(current, *stale)

    row = client.list_games()["cnc4"]
    assert (row["peer_count"], row["eti_game_version"], row["peers"]) == (
        1,
        "20250301",
        [current.peer_id],
    )
    w = client.download("cnc4", install=False)
    assert w.outcome == "download-finished", w.terminal
    (files,) = client.events("got-game-files", since=w.start, until=w.end)
    assert [s["peer_addr"] for s in files["sources"]] == [current.addr]
    chunks = client.events("download-chunk-finished", since=w.start, until=w.end)
    assert chunks and {c["peer_addr"] for c in chunks} == {current.addr}
    assert set(w.terminal["bytes_per_source"]) == {current.addr}
    assert_same(client.manifest("cnc4"), current.manifest("cnc4"), "cnc4")
