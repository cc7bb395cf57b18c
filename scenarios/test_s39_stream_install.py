"""S39 Streamed install without keeping the archive payload.

The source runs `unrar p` over its real RAR `cnctw.eti` and streams each member; the receiver
(no unrar of its own) writes the members straight into `local/` and never holds the archive or
a root `version.ini`. Every member must equal what `unrar p` prints in the source's world.
"""

import pytest

from harness.lab import Lab
from harness.runlog import Figure

TERMINAL = ("install-finished", "install-failed", "download-failed")
STEPS = (
    "got-game-files",
    "download-begin",
    "download-chunk-finished",
    "download-finished",
    "install-begin",
    "install-finished",
)
ENTRIES = {"bin/cnctw-payload.bin": 2 * 1024 * 1024, "data/cnctw-assets.dat": 1024 * 1024}


@pytest.mark.scenario("S39")
def test_s39_streamed_install_keeps_no_archive_payload(lab: Lab, figure: Figure) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo", args=("--unrar", lab.backend.unrar))
    client = lab.peer("client")
    client.connect(bravo)
    expected = bravo.rar_members(lab.backend.unrar, "cnctw/cnctw.eti")
    assert {p: size for p, (size, _) in expected.files.items()} == ENTRIES

    start = client.mark()
    accepted = client.send("stream-install", game_id="cnctw")
    assert accepted == {"game_id": "cnctw", "sources": [bravo.addr]}
    installed = client.expect_one_of(TERMINAL, where={"game_id": "cnctw"}, since=start)
    end = client.index(installed) + 1
    assert installed["event"] == "install-finished", installed
    timeline = [
        e
        for e in client.events(since=start, until=end, where={"game_id": "cnctw"})
        if e["event"] in STEPS
    ]
    assert [e["event"] for e in timeline] == [
        "got-game-files",
        "download-begin",
        "download-chunk-finished",
        "download-chunk-finished",
        "download-finished",
        "install-begin",
        "install-finished",
    ], timeline
    files, begin, first, second, finished, _, _ = timeline
    for bad in ("download-failed", "install-failed", "download-source-excluded"):
        client.no_event_since(bad, since=start, until=end)

    assert files["files"] == [{"path": p, "size": s} for p, s in ENTRIES.items()], files
    assert (begin["total_bytes"], begin["chunks"], begin["sources"]) == (
        sum(ENTRIES.values()),
        len(ENTRIES),
        [bravo.addr],
    ), begin
    chunks = client.events("download-chunk-finished", since=start, until=end)
    assert chunks == [first, second], "one streamed chunk per archive member"
    assert [(c["path"], c["offset"], c["bytes"], c["peer_addr"]) for c in chunks] == [
        (f".local.installing/{path}", 0, size, bravo.addr) for path, size in ENTRIES.items()
    ]
    assert finished["bytes"] == sum(ENTRIES.values()) and finished["chunks"] == len(ENTRIES)
    assert finished["bytes_per_source"] == {bravo.addr: sum(ENTRIES.values())}
    for rate in ("duration_ms", "mib_per_s", "mbit_per_s"):
        assert finished[rate] > 0, finished

    client.assert_stream_installed("cnctw", expected)

    # The same game from the same source as a plain download, for the run log's comparison.
    downloader = lab.peer("downloader")
    downloader.connect(bravo)
    plain = downloader.download("cnctw")
    assert plain.outcome == "download-finished", plain.terminal
    figure("stream_mib_per_s", finished["mib_per_s"])
    figure("download_mib_per_s", plain.terminal["mib_per_s"])
