"""S45 The only sender dies during a streamed install: a clean failure and a full rollback.

The source streams `alienswarm` (3 x 40 MiB members) throttled to 8 MiB/s, so when the first
member has arrived (about 5 s in) two are still to come: the kill is mid-stream by construction.
"""

import pytest

from harness.lab import Lab

RATE = ("--max-upload-rate", str(8 * 1024 * 1024))


@pytest.mark.scenario("S45")
def test_s45_sender_killed_during_streamed_install(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=("--unrar", lab.backend.unrar, *RATE))
    client = lab.peer("client")
    client.connect(source)

    start = client.mark()
    client.send("stream-install", game_id="alienswarm")
    first = client.expect("download-chunk-finished", where={"game_id": "alienswarm"}, since=start)
    assert first["peer_addr"] == source.addr
    source.kill()
    failed = client.expect_one_of(
        ("download-failed", "download-finished", "install-finished"),
        where={"game_id": "alienswarm"},
        since=start,
        timeout=60,
    )
    end = client.index(failed) + 1
    assert (failed["event"], failed["code"]) == ("download-failed", "sources-lost"), failed
    for success in ("download-finished", "install-begin", "install-finished"):
        client.no_event_since(success, since=start, until=end)
    chunks = client.events("download-chunk-finished", since=start, until=end)
    assert len(chunks) < 3, "the kill came before the stream was complete"
    (excluded,) = client.events("download-source-excluded", since=start, until=end)
    assert excluded["peer_addr"] == source.addr, excluded
    assert client.status()["active_operations"] == []

    for gone in ("local", ".local.installing", "alienswarm.eti", "version.ini"):
        assert not client.exists(f"alienswarm/{gone}"), f"{gone} is left on the receiver"
    assert not client.exists("alienswarm"), "the root, empty before, is removed too"
    assert client.game("alienswarm") is None
