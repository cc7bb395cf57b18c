"""S14 Large multi-peer chunked download: a 4-chunk archive splits 2+2 between two sources."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.peer import chunk_bytes_by_source
from harness.runlog import Figure

CHUNK = 32 * 1024 * 1024


@pytest.mark.scenario("S14")
def test_s14_large_multi_peer_chunked_download(lab: Lab, figure: Figure) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    stage = lab.peer("stage")
    stage.connect(alpha)
    assert stage.download("alienswarm").outcome == "download-finished"

    client = lab.peer("client")
    client.connect(alpha, stage)
    assert client.list_games()["alienswarm"]["peer_count"] == 2

    w = client.download("alienswarm")
    assert w.outcome == "download-finished", w.terminal
    start, end = w.start, w.end

    size = alpha.manifest("alienswarm").files["alienswarm.eti"][0]
    assert size > 100_000_000 and -(-size // CHUNK) == 4, "the archive spans exactly 4 chunks"
    eti = client.events(
        "download-chunk-finished", since=start, until=end, where={"path": "alienswarm.eti"}
    )
    assert sorted(e["offset"] for e in eti) == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    per_source = chunk_bytes_by_source(eti)
    assert set(per_source) == {alpha.addr, stage.addr}, per_source
    counts = {a: sum(1 for e in eti if e["peer_addr"] == a) for a in per_source}
    assert sorted(counts.values()) == [2, 2], counts
    assert abs(per_source[alpha.addr] - per_source[stage.addr]) <= CHUNK, per_source

    assert_same(client.manifest("alienswarm"), alpha.manifest("alienswarm"), "alienswarm")
    figure("mib_per_s", w.terminal["mib_per_s"])
    figure("bytes_per_source", "/".join(str(v) for v in sorted(per_source.values())))
