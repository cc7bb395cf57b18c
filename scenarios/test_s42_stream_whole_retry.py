"""S42 Streamed install whole-stream retry.

Two sources serve the same catalog-version `cnctw`; sources are tried in address order, so the
one that sorts first is made the broken one: both start pointing `--unrar` at a path that does
not exist yet; the later one gets a real unrar there, the first one an unrar that is honest on
its first payload pass (the one its listing's digests come from) and fails every later one.
(Address order is the peer's, "host:port" as strings: on the local backend 127.x.y.10 sorts
before 127.x.y.9, so start order alone would not decide it.) The broken source is validated
like the good one, fails its stream, contributes no chunk, and the good one then streams the
whole archive afresh.

The sources serve `fixture-solid`'s cnctw, a solid archive: only an archive that must be
extracted streams through the source's unrar. A stored one is sent as it lies in the archive
(fixture-bravo's cnctw, say), where a broken unrar could fail only the listing.
"""

import pytest

from harness.lab import Lab


def fails_after_listing(real: str, where: str) -> str:
    """`real` unrar for the first payload pass (the listing's digests), exit 1 for later ones."""
    marker = where + ".listed"
    return (
        "#!/bin/sh\n"
        f'if [ "$1" = p ] && [ -e "{marker}" ]; then exit 1; fi\n'
        f'[ "$1" = p ] && touch "{marker}"\n'
        f'exec "{real}" "$@"\n'
    )


@pytest.mark.scenario("S42")
def test_s42_streamed_install_retries_the_whole_stream(lab: Lab) -> None:
    broken, good = lab.stream_sources("fixture-solid")
    unrar_of = lab.unrar_of
    rc, out = good.run("ln", "-s", lab.backend.unrar, unrar_of(good.name))
    assert rc == 0, out
    broken.write_executable(
        unrar_of(broken.name), fails_after_listing(lab.backend.unrar, unrar_of(broken.name))
    )
    client = lab.peer("client")
    client.connect(broken, good)
    expected = good.rar_members(lab.backend.unrar, "cnctw/cnctw.eti")
    total = sum(size for size, _ in expected.files.values())

    start = client.mark()
    accepted = client.send("stream-install", game_id="cnctw")
    assert accepted["sources"] == [broken.addr, good.addr], "the broken source sorts first"
    installed = client.expect_one_of(
        ("install-finished", "install-failed", "download-failed"),
        where={"game_id": "cnctw"},
        since=start,
    )
    end = client.index(installed) + 1
    assert installed["event"] == "install-finished", installed
    (files,) = client.events("got-game-files", since=start, until=end)
    (finished,) = client.events("download-finished", since=start, until=end)
    assert client.events("install-begin", since=client.index(finished), until=end)
    for bad in ("download-failed", "install-failed"):
        client.no_event_since(bad, since=start, until=end)
    assert [s["peer_addr"] for s in files["sources"]] == [broken.addr, good.addr], "both valid"
    assert files["rejected_sources"] == [], files
    (excluded,) = client.events("download-source-excluded", since=start, until=end)
    assert excluded["peer_addr"] == broken.addr, excluded
    assert client.index(files) < client.index(excluded), "the broken source was validated first"

    chunks = client.events("download-chunk-finished", since=start, until=end)
    assert {c["peer_addr"] for c in chunks} == {good.addr}, "the broken source sent no chunk"
    after = client.events("download-chunk-finished", since=client.index(excluded), until=end)
    assert after == chunks, "every chunk came after the broken attempt was given up"
    assert [c["path"] for c in chunks] == [f".local.installing/{p}" for p in expected.files]
    begins = client.events("download-begin", since=start, until=end)
    assert {b["total_bytes"] for b in begins} == {total}, begins
    assert finished["bytes"] == total, finished
    assert finished["bytes_per_source"] == {good.addr: total}, finished

    client.assert_stream_installed("cnctw", expected)
