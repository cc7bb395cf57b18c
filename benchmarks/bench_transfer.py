"""Single-source download throughput of lanpeer against raw TCP on the same path.

Both legs move the same file over loopback into the same filesystem and end with fsync, so the
ratio isolates what lanpeer adds (QUIC control round trips, chunk hashing, verification, the
commit). Prints figures and the ratio; asserts nothing about time.

    .venv/bin/python benchmarks/bench_transfer.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from harness.backends.base import PeerSpec
from harness.backends.local import LocalBackend
from harness.peer import PeerHandle

MIB = 1024 * 1024
GAME = "bf1942"  # any catalog game ID; its version comes from the bundled catalog


def make_game(games: Path, size: int) -> Path:
    from peer.catalog import load_catalog

    root = games / GAME
    root.mkdir(parents=True)
    block = os.urandom(MIB)
    with open(root / f"{GAME}.eti", "wb") as f:
        for _ in range(size // MIB):
            f.write(block)
    (root / "version.ini").write_text(load_catalog()[GAME] + "\n")
    return root / f"{GAME}.eti"


def raw_tcp(path: Path, dest: Path) -> float:
    """MiB/s of sendfile over loopback TCP into `dest`, fsync'd, timed like a download."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn, open(path, "rb") as f:
            conn.sendfile(f)

    threading.Thread(target=serve, daemon=True).start()
    size = path.stat().st_size
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, open(dest, "wb") as out:
        buf = bytearray(MIB)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = sock.recv_into(view)
            if not n:
                break
            out.write(view[:n])
            got += n
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.perf_counter() - start
    server.close()
    dest.unlink()
    return size / MIB / elapsed


def peak_rss_mib(pid: int) -> float:
    """High-water resident memory of a live process (Linux), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lanpeer_download(backend: LocalBackend, source: PeerHandle, run: int) -> tuple[float, float]:
    spec = PeerSpec(name=f"client{run}")
    client = PeerHandle(backend.create(spec), spec)
    client.start()
    client.connect(source)
    mark = client.mark()
    client.send("download", game_id=GAME, install=False)
    done = client.expect("download-finished", since=mark, timeout=600)
    process = backend.peers[-1]
    assert process.proc is not None
    rss = peak_rss_mib(process.proc.pid)
    process.stop()
    return float(done["mib_per_s"]), rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    backend = LocalBackend("bench", worker="master")  # not under xdist: 127.10.x.y
    try:
        spec = PeerSpec(name="source")
        process = backend.create(spec)
        archive = make_game(process.games, args.size_mib * MIB)
        source = PeerHandle(process, spec)
        source.start()
        scratch = Path(tempfile.mkdtemp(dir=backend.root))
        tcp, peer, rss = [], [], []
        for run in range(args.runs):
            tcp.append(raw_tcp(archive, scratch / "copy"))
            speed, peak = lanpeer_download(backend, source, run)
            peer.append(speed)
            rss.append(peak)
        t, p = statistics.median(tcp), statistics.median(peer)

        def runs(xs: list[float]) -> str:
            return ", ".join(f"{x:.0f}" for x in xs)

        print(f"file: {args.size_mib} MiB, runs: {args.runs}, loopback, fsync'd into one fs")
        print(f"raw TCP sendfile : median {t:8.1f} MiB/s  (runs {runs(tcp)})")
        print(f"lanpeer download : median {p:8.1f} MiB/s  (runs {runs(peer)})")
        print(f"lanpeer / raw TCP: {p / t:.2f}")
        assert process.proc is not None
        print(
            f"peak RSS: receiver {max(rss):.0f} MiB, source "
            f"{peak_rss_mib(process.proc.pid):.0f} MiB, for a {args.size_mib} MiB file "
            "(flat memory means these stay put as the file grows)"
        )
    finally:
        backend.close()


if __name__ == "__main__":
    main()
