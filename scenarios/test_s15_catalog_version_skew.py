"""S15 Catalog-version skew: of three peers only the catalog-version one lists, votes, serves."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S15")
def test_s15_catalog_version_skew(lab: Lab) -> None:
    stale_a = lab.peer("stale-a", fixture="fixture-stale-a")
    stale_b = lab.peer("stale-b", fixture="fixture-stale-b")
    current = lab.peer("current", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(stale_a, stale_b, current)

    catalog_version = "20250301"
    assert stale_a.read("cnc4/version.ini") != stale_b.read("cnc4/version.ini")
    row = client.list_games()["cnc4"]
    assert (row["peer_count"], row["eti_game_version"], row["peers"]) == (
        1,
        catalog_version,
        [current.peer_id],
    )

    w = client.download("cnc4", install=False)
    assert w.outcome == "download-finished", w.terminal
    start, end = w.start, w.end
    (files,) = client.events("got-game-files", since=start, until=end)
    assert [s["peer_addr"] for s in files["sources"]] == [current.addr]
    chunks = client.events("download-chunk-finished", since=start, until=end)
    assert chunks and {c["peer_addr"] for c in chunks} == {current.addr}
    assert client.read("cnc4/version.ini") == f"{catalog_version}\n".encode()
    assert_same(client.manifest("cnc4"), current.manifest("cnc4"), "cnc4 vs current")
