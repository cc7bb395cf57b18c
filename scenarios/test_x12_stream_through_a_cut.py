"""X12 Stream through a cut: the source of a streamed install is cut off silently mid-stream.

Both sources serve `cnctw` (3 MiB) throttled to 256 KiB/s, so the stream takes about 12 s and
the cut, right after it begins, lands mid-stream. The receiver gives the stream up once no byte
came for the idle timeout, excludes the cut source and streams the whole archive afresh from the
next; the result equals `unrar p` at the source and nothing is left staged.
"""

import pytest

from harness.lab import Lab

RATE = str(256 * 1024)


@pytest.mark.scenario("X12")
@pytest.mark.requires_docker("a silent cut needs network namespaces (iptables)")
def test_x12_stream_through_a_cut(lab: Lab) -> None:
    args = ("--unrar", lab.backend.unrar, "--max-upload-rate", RATE)
    one, two = (lab.peer(n, fixture="fixture-bravo", args=args) for n in ("source-1", "source-2"))
    first, second = sorted((one, two), key=lambda p: p.addr)  # the order a receiver tries them
    client = lab.peer("client")
    client.connect(first, second)
    expected = second.rar_members(lab.backend.unrar, "cnctw/cnctw.eti")

    start = client.mark()
    accepted = client.send("stream-install", game_id="cnctw")
    assert accepted["sources"] == [first.addr, second.addr]
    client.expect("download-begin", where={"game_id": "cnctw"}, since=start)
    fault = lab.nemesis.partition([client], [first])
    cut = client.mark()
    installed = client.expect_one_of(
        ("install-finished", "install-failed", "download-failed"),
        where={"game_id": "cnctw"},
        since=start,
        timeout=120,
    )
    end = client.index(installed) + 1
    assert installed["event"] == "install-finished", installed
    for bad in ("download-failed", "install-failed"):
        client.no_event_since(bad, since=start, until=end)

    # The fault bit: the cut source's stream was given up and it was excluded.
    (excluded,) = client.events("download-source-excluded", since=cut, until=end)
    assert excluded["peer_addr"] == first.addr, excluded
    after = client.events("download-chunk-finished", since=client.index(excluded), until=end)
    assert {c["peer_addr"] for c in after} == {second.addr}
    assert sorted(c["path"] for c in after) == sorted(
        f".local.installing/{p}" for p in expected.files
    ), "the whole archive came afresh from the next source"
    (finished,) = client.events("download-finished", since=start, until=end)
    assert finished["bytes_per_source"] == {second.addr: sum(s for s, _ in expected.files.values())}
    client.assert_stream_installed("cnctw", expected)
    fault.heal()
