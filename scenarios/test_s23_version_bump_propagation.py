"""S23 Version bump propagation: a stale root turning catalog-current becomes downloadable."""

import pytest

from harness.lab import Lab
from peer.catalog import load_catalog


@pytest.mark.scenario("S23")
def test_s23_version_bump_propagation(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-stale-b")  # cnc4 at 20250201; catalog: 20250301
    alpha.connect(bravo)
    assert "cnc4" not in alpha.list_games(), "a stale root is not listed"
    (entry,) = alpha.list_peers()
    assert {g["game_id"]: g["version"] for g in entry["games"]}["cnc4"] == "20250201"

    mark = alpha.mark()
    current = load_catalog()["cnc4"]
    assert current != "20250201"
    bravo.write("cnc4/version.ini", f"{current}\n".encode())
    alpha.expect("peer-library-changed", where=lambda e: e["updated"] == ["cnc4"], since=mark)
    row = alpha.list_games()["cnc4"]
    assert (row["peer_count"], row["eti_game_version"]) == (1, current)
    alpha.no_event_since("peer-connected", since=mark)
    alpha.no_event_since("peer-lost", since=mark)
