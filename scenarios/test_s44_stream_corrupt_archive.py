"""S44 A corrupt source archive: the streamed install fails and leaves nothing behind.

The source keeps advertising catalog-version `cnctw`, but its root `.eti` has been replaced
with bytes that are no RAR at all, so nothing can be listed or printed from it.
"""

import pytest

from harness.lab import Lab

GARBAGE = b"this is not a RAR archive\n" * 256


@pytest.mark.scenario("S44")
def test_s44_corrupt_archive_streamed_install_rolls_back(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-bravo", args=("--unrar", lab.backend.unrar))
    client = lab.peer("client")
    client.connect(source)
    source.write("cnctw/cnctw.eti", GARBAGE)
    assert source.read("cnctw/cnctw.eti") == GARBAGE
    assert client.list_games()["cnctw"]["peer_count"] == 1, "still a catalog-version source"

    w = client.stream_install("cnctw")
    assert w.outcome == "download-failed", w.terminal
    assert w.terminal["code"] != "internal", w.terminal
    assert "not a readable RAR archive" in w.terminal["reason"], "the reason is the source's"
    told = client.events("download-source-skipped", since=w.start, until=w.end)
    told += client.events("download-source-excluded", since=w.start, until=w.end)
    assert [e["peer_addr"] for e in told] == [source.addr], "the receiver says who failed it"
    for success in ("download-finished", "install-begin", "install-finished"):
        client.no_event_since(success, since=w.start, until=w.end)
    client.no_event_since("download-chunk-finished", since=w.start, until=w.end)
    assert client.status()["active_operations"] == []

    for gone in ("local", ".local.installing", "cnctw.eti", "version.ini"):
        assert not client.exists(f"cnctw/{gone}"), f"{gone} is left on the receiver"
    assert not client.exists("cnctw"), "the root, empty before, is removed too"
    assert client.game("cnctw") is None
