"""X07 Scale mesh: 24 peers, a 25th client connected to all, one download over 16 sources.

Three fixtures of three small games each are spread over 24 peers (8 each); css, in mesh-a and
mesh-b, has 16 byte-identical sources, mesh-c's 8 peers have none. The client asks for 256 KiB
chunks (the receiver chooses the chunk size), so css's 8 MiB is 32 chunks: two per source when
planned least-loaded. Figures: the fan-out's MiB/s and the client's CPU time, CPU share and peak
RSS during it (from /proc; recorded, never asserted).
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.peer import PeerHandle, chunk_bytes_by_source
from harness.resources import sample
from harness.runlog import Figure
from peer.catalog import load_catalog

CHUNK = 256 * 1024
PEERS_PER_FIXTURE = 8
GAMES = {
    "fixture-mesh-a": ("css", "alienswarm", "bf1942"),
    "fixture-mesh-b": ("css", "bfbc2", "cnc4"),
    "fixture-mesh-c": ("cnctw", "cod5", "ggoo"),
}


@pytest.mark.scenario("X07")
def test_x07_scale_mesh(lab: Lab, figure: Figure) -> None:
    client = lab.peer("client", args=("--chunk-size", str(CHUNK)))  # also makes the network
    with ThreadPoolExecutor(4) as pool:  # starting 24 one by one is most of X07's time
        mesh: dict[str, list[PeerHandle]] = {
            fixture: list(
                pool.map(
                    lambda i, f=fixture: lab.peer(f"{f.removeprefix('fixture-')}-{i}", fixture=f),
                    range(PEERS_PER_FIXTURE),
                )
            )
            for fixture in GAMES
        }
    peers = [p for group in mesh.values() for p in group]
    assert len(peers) == 24
    client.connect(*peers)
    assert {p["peer_id"] for p in client.list_peers()} == {p.peer_id for p in peers}

    rows = client.list_games()
    holders: dict[str, set[str]] = {}
    for fixture, games in GAMES.items():
        for game_id in games:
            holders.setdefault(game_id, set()).update(p.peer_id for p in mesh[fixture])
    assert set(rows) == set(holders)
    catalog = load_catalog()
    for game_id, expected in holders.items():
        row = rows[game_id]
        assert set(row["peers"]) == expected and row["peer_count"] == len(expected), row
        assert row["eti_game_version"] == catalog[game_id], row
        assert not row["downloaded"] and not row["installed"], row

    sources = mesh["fixture-mesh-a"] + mesh["fixture-mesh-b"]
    before = sample(client, reset_peak=True)
    started = time.monotonic()
    w = client.download("css")
    wall = time.monotonic() - started
    after = sample(client)
    assert w.outcome == "download-finished", w.terminal

    data = client.events(
        "download-chunk-finished", since=w.start, until=w.end, where={"path": "css-data.bin"}
    )
    assert sorted(e["offset"] for e in data) == [i * CHUNK for i in range(32)], "each chunk once"
    per_source = chunk_bytes_by_source(data)
    assert set(per_source) == {p.addr for p in sources}, per_source
    assert len(per_source) >= 8
    spread = max(per_source.values()) - min(per_source.values())
    assert spread <= CHUNK, f"bytes per source differ by {spread} > one chunk: {per_source}"
    assert_same(client.manifest("css"), sources[0].manifest("css"), "css")

    cpu_s = after.cpu_s - before.cpu_s
    figure("sources", len(per_source))
    figure("mib_per_s", w.terminal["mib_per_s"])
    figure("client_cpu_s", round(cpu_s, 2))
    figure("client_cpu_pct", round(100 * cpu_s / wall, 1))
    figure("client_rss_peak_mib", round(after.peak_kib / 1024, 1))
    figure("client_rss_before_mib", round(before.rss_kib / 1024, 1))
