"""S17 Catalog-version conflict: B and C disagree, stale A is never consulted, download fails.

Votes compare sizes and chunk digests, so A's stale `version.ini` could never side with B; the
check that A was not consulted is that the refusal counts exactly two variants (B's and C's).
"""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S17")
def test_s17_catalog_version_conflict_rejection(lab: Lab) -> None:
    stale = lab.peer("stale", fixture="fixture-stale-a")
    b = lab.peer("b", fixture="fixture-bravo")
    c = lab.peer("c", fixture="fixture-conflict")
    client = lab.peer("client")
    client.connect(stale, b, c)
    row = client.list_games()["cnc4"]
    assert row["peer_count"] == 2 and set(row["peers"]) == {b.peer_id, c.peer_id}

    w = client.download("cnc4", install=False)
    failed = w.terminal
    assert (w.outcome, failed["code"]) == ("download-failed", "ambiguous-metadata"), failed
    assert "(2 variants" in failed["reason"], failed
    for never in ("got-game-files", "download-begin", "download-chunk-finished"):
        client.no_event_since(never, since=w.start, until=w.end)
    assert not client.exists("cnc4/version.ini")
    assert client.status()["active_operations"] == []
