"""S29 Empty-library peer: listed with zero games, then downloads, advertises and serves."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same


@pytest.mark.scenario("S29")
def test_s29_empty_library_peer_participates(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    empty = lab.peer("empty")
    empty.connect(alpha)
    (entry,) = alpha.list_peers()
    assert (entry["peer_id"], entry["game_count"], entry["games"]) == (empty.peer_id, 0, [])

    mark = alpha.mark()
    assert empty.download("alienswarm").outcome == "download-finished"
    alpha.expect(
        "peer-library-changed",
        where=lambda e: e["peer_id"] == empty.peer_id and "alienswarm" in e["added"],
        since=mark,
    )
    (entry,) = alpha.list_peers()
    assert [g["game_id"] for g in entry["games"]] == ["alienswarm"]

    third = lab.peer("third")
    third.connect(empty)
    w = third.download("alienswarm")
    assert w.outcome == "download-finished", w.terminal
    assert {c["peer_addr"] for c in third.events("download-chunk-finished", since=w.start)} == {
        empty.addr
    }
    assert_same(third.manifest("alienswarm"), alpha.manifest("alienswarm"), "via the new source")
