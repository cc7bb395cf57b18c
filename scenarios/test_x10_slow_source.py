"""X10 (beyond upstream, issue 16) Slow source: three sources, one held by the network to 1/50 of
the others' rate. The download takes at most 1.25x what the two fast sources alone take, both
measured here, under the same caps: the planner learns each source's rate and gives the slow
one no more than it can finish in time, and in the end game the chunks still in flight on it
are also asked of an idle fast source, the first verified copy winning.

Every source's egress is capped by the network (`rate_cap`, a tbf qdisc), the fast ones too, so
the ratio is set by the caps rather than by the machine's load. 8 MiB chunks (every peer gets
`--chunk-size`) make the download about fifteen chunks long, so the slow source has chunks both
queued (taken by the fast ones) and in flight (raced in the end game).
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.peer import chunk_bytes_by_source
from harness.runlog import Figure

GAME = "alienswarm"
CHUNK = 8 * 1024 * 1024
LAYOUT = ("--chunk-size", str(CHUNK))
FAST_MBIT = 100.0
SLOW_MBIT = FAST_MBIT / 50
BOUND = 1.25


@pytest.mark.scenario("X10")
@pytest.mark.requires_docker("a network rate cap needs network namespaces (tc tbf)")
def test_x10_slow_source(lab: Lab, figure: Figure) -> None:
    fast = [lab.peer(n, fixture="fixture-alpha", args=LAYOUT) for n in ("fast-1", "fast-2")]
    slow = lab.peer("slow", fixture="fixture-alpha", args=LAYOUT)
    client = lab.peer("client", args=LAYOUT)
    for source in fast:
        lab.nemesis.rate_cap(source, FAST_MBIT)
    lab.nemesis.rate_cap(slow, SLOW_MBIT)

    # The two fast sources alone.
    client.connect(*fast)
    alone = client.download(GAME)
    assert alone.outcome == "download-finished", alone.terminal
    assert set(alone.terminal["bytes_per_source"]) == {s.addr for s in fast}
    assert_same(client.manifest(GAME), fast[0].manifest(GAME), GAME)
    removed = client.mark()
    client.remove(GAME)
    client.expect("local-library-changed", since=removed)

    # All three, the slow one among them.
    client.connect(slow)
    assert client.list_games()[GAME]["peer_count"] == 3
    w = client.download(GAME)
    assert w.outcome == "download-finished", w.terminal
    assert set(w.terminal["bytes_per_source"]) == {s.addr for s in (*fast, slow)}
    assert_same(client.manifest(GAME), fast[0].manifest(GAME), GAME)
    client.no_event_since("download-source-excluded", since=w.start, until=w.end)
    client.no_event_since("download-chunk-failed", since=w.start, until=w.end)

    two_s = alone.terminal["duration_ms"] / 1000
    three_s = w.terminal["duration_ms"] / 1000
    figure("two_fast_s", round(two_s, 2))
    figure("with_slow_s", round(three_s, 2))
    figure("ratio", round(three_s / two_s, 3))
    figure("two_fast_mib_per_s", alone.terminal["mib_per_s"])
    figure("with_slow_mib_per_s", w.terminal["mib_per_s"])

    # The fault bit: the slow source had work in flight, and the end game raced it on a fast
    # source, with the rates the planner had learned (the slow one's far below a fast one's).
    raced = client.events("download-chunk-duplicated", since=w.start, until=w.end)
    assert raced, "no end-game duplicate: the slow source was never raced"
    assert {r["holder_addr"] for r in raced} == {slow.addr}, raced
    assert {r["peer_addr"] for r in raced} <= {s.addr for s in fast}, raced
    for r in raced:
        assert r["holder_bytes_per_s"] is not None, r
        if r["bytes_per_s"] is not None:
            assert r["holder_bytes_per_s"] * 10 < r["bytes_per_s"], r
    finished = client.events("download-chunk-finished", since=w.start, until=w.end)
    won = [(c["path"], c["offset"]) for c in finished if c["duplicate"]]
    assert won, "no duplicate won against the slow source"
    delivered = chunk_bytes_by_source(finished)
    figure("duplicates", len(raced))
    figure("duplicates_won", len(won))
    figure("slow_chunks_delivered", sum(1 for c in finished if c["peer_addr"] == slow.addr))
    figure("slow_learned_bytes_per_s", min(r["holder_bytes_per_s"] for r in raced))
    figure("bytes_per_source", "/".join(str(delivered.get(s.addr, 0)) for s in (*fast, slow)))

    assert three_s <= BOUND * two_s, (
        f"three sources took {three_s:.2f} s, over {BOUND} x the two fast ones' {two_s:.2f} s"
    )
