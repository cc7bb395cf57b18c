"""S37 Single-source download throughput: a sparse 2 GiB archive, with the figures reported.

The archive is made inside the source's world (a sparse file: no 2 GiB copy into a container).
Both games roots are tmpfs, so the figure is the transfer path, not a disk and not the engine's
storage driver (fuse-overlayfs reads a file in a container layer slowly the first time).
"""

import pytest

from harness.lab import Lab
from harness.runlog import Figure
from peer.catalog import load_catalog

GIB = 1024**3

pytestmark = pytest.mark.requires_docker(
    reason="both peers need a tmpfs /games, which only the Docker backend provides",
)


@pytest.mark.scenario("S37")
def test_s37_single_source_download_throughput(lab: Lab, figure: Figure) -> None:
    source = lab.peer("source", games_tmpfs="64m")  # a sparse file takes no tmpfs pages
    source.run("mkdir", "-p", source.process.path("css"))
    rc, out = source.run("truncate", "-s", str(2 * GIB), source.process.path("css/css.eti"))
    assert rc == 0, out
    source.write("css/version.ini", f"{load_catalog()['css']}\n".encode())  # sentinel last
    source.expect(
        "local-library-changed", where=lambda e: any(g["game_id"] == "css" for g in e["games"])
    )

    client = lab.peer("client", games_tmpfs="3g")
    client.connect(source)
    w = client.download("css", install=False, timeout=600)
    assert w.outcome == "download-finished", w.terminal
    done = w.terminal
    for key in ("bytes", "duration_ms", "mib_per_s", "mbit_per_s", "chunks"):
        assert done[key] > 0, done
    assert done["bytes"] == 2 * GIB + 9
    assert done["chunks"] == 64 + 1  # 2 GiB in 32 MiB chunks, plus version.ini
    assert abs(done["mbit_per_s"] / done["mib_per_s"] - 8.388608) < 1e-3
    expected = done["bytes"] / (1024 * 1024) / (done["duration_ms"] / 1000)
    assert abs(done["mib_per_s"] - expected) / expected < 0.01
    assert client.manifest("css").files["css.eti"][0] == 2 * GIB
    figure("mib_per_s", done["mib_per_s"])
    figure("mbit_per_s", done["mbit_per_s"])
