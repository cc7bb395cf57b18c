"""S19 Mid-download sole-source drop: a clean failure, nothing advertised, and a retry works."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

RATE = ("--max-upload-rate", str(24 * 1024 * 1024))
LIVENESS = ("--ping-interval", "1", "--stale-timeout", "4")


@pytest.mark.scenario("S19")
def test_s19_sole_source_killed_mid_download(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=RATE)
    client = lab.peer("client", args=LIVENESS)
    observer = lab.peer("observer")
    client.connect(source)
    observer.connect(client)

    start = client.mark()
    client.send("download", game_id="alienswarm", install=False)
    client.expect("download-begin", where={"game_id": "alienswarm"}, since=start)
    source.kill()
    failed = client.expect(
        "download-failed", where={"game_id": "alienswarm"}, since=start, timeout=60
    )
    end = client.mark()
    assert failed["code"] == "sources-lost", failed
    client.no_event_since("download-finished", since=start, until=end)

    assert not client.exists("alienswarm/version.ini"), "no committed sentinel"
    assert client.exists("alienswarm/alienswarm.eti"), "partial payload may stay..."
    assert client.game("alienswarm") is None, "...but is not a local game"
    assert client.status()["active_operations"] == []
    (entry,) = [p for p in observer.list_peers() if p["peer_id"] == client.peer_id]
    assert "alienswarm" not in {g["game_id"] for g in entry["games"]}, "partial advertised"

    client.expect("peer-lost", where={"peer_id": source.peer_id}, since=start, timeout=10)
    fresh = lab.peer("fresh", fixture="fixture-alpha")
    client.connect(fresh)
    assert client.download("alienswarm", install=False).outcome == "download-finished"
    assert_same(client.manifest("alienswarm"), fresh.manifest("alienswarm"), "retried download")
