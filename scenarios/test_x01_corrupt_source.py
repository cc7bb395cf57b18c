"""X01 (beyond upstream) A source serving corrupted bytes of the right size.

The liar's archive is damaged in place after it hashed it, with size and mtime restored, so it
keeps advertising the honest descriptor (as silent disk corruption would). Every chunk is checked
against the validated BLAKE3: the bad chunk is refetched from the honest source and the liar is
excluded. With the liar as the only source the download fails cleanly.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.peer import PeerHandle

CHUNK = 32 * 1024 * 1024
# Flip 4 KiB inside each of the four chunks, then restore size and mtime.
CORRUPT = """
import os, sys
p = sys.argv[1]
st = os.stat(p)
with open(p, "r+b") as f:
    for k in range(4):
        f.seek(k * int(sys.argv[2]) + 12345)
        good = f.read(4096)
        f.seek(-len(good), 1)
        f.write(bytes(255 - b for b in good))  # every byte flipped: certainly different
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
"""


def make_liar(lab: Lab, prober: PeerHandle) -> PeerHandle:
    liar = lab.peer("liar", fixture="fixture-alpha")
    describe = {"type": "get-game", "game_id": "alienswarm", "chunk_size": 32 * 1024 * 1024}
    prober.probe(liar, describe)  # the liar hashes honestly, in the receiver's chunk size
    path = liar.process.path("alienswarm/alienswarm.eti")
    rc, out = liar.run("python3", "-c", CORRUPT, path, str(CHUNK))
    assert rc == 0, out
    return liar


@pytest.mark.scenario("X01")
def test_x01_corrupt_source_is_excluded_and_bytes_refetched(lab: Lab) -> None:
    honest = lab.peer("honest", fixture="fixture-alpha")
    client = lab.peer("client")
    liar = make_liar(lab, client)
    assert liar.manifest("alienswarm").diff(honest.manifest("alienswarm")), "liar is corrupted"
    client.connect(honest, liar)

    w = client.download("alienswarm", install=False)
    assert w.outcome == "download-finished", w.terminal
    start, end = w.start, w.end
    (excluded,) = client.events("download-source-excluded", since=start, until=end)
    assert (excluded["peer_addr"], excluded["code"]) == (liar.addr, "bad-chunk")
    bad = client.events("download-chunk-failed", since=start, until=end)
    assert bad and {(b["peer_addr"], b["code"]) for b in bad} == {(liar.addr, "bad-chunk")}
    eti = client.events(
        "download-chunk-finished", since=start, until=end, where={"path": "alienswarm.eti"}
    )
    assert sorted(e["offset"] for e in eti) == [k * CHUNK for k in range(4)], "each chunk once"
    assert {e["peer_addr"] for e in eti} == {honest.addr}, "no corrupted chunk was accepted"
    assert_same(client.manifest("alienswarm"), honest.manifest("alienswarm"), "vs honest")

    lonely = lab.peer("lonely")
    lonely.connect(liar)
    w = lonely.download("alienswarm", install=False)
    assert (w.outcome, w.terminal["code"]) == ("download-failed", "sources-lost"), w.terminal
    assert not lonely.exists("alienswarm/version.ini")
    assert lonely.game("alienswarm") is None
