"""The fast lane between two peer containers, against raw TCP on the same path, in one run.

Two containers of the peer image on one Docker network, both with a tmpfs games root. The
source holds a sparse 2 GiB archive on its tmpfs (so neither leg measures the engine's storage
driver: fuse-overlayfs reads a container layer slowly the first time). The legs alternate:

- raw TCP: a one-shot sender in the source container `sendfile`s the file; a receiver in the
  client container `recv_into`s a reused 1 MiB buffer, `pwrite`s it to its tmpfs and SHA-256s
  every byte (what a chunk check costs, without a protocol);
- lanpeer: the client peer downloads the same game from the source peer (`download-finished`'s
  own `mib_per_s`).

It prints each leg's runs, medians, the ratio lanpeer/raw, the client peer's peak RSS (VmHWM,
reset before each lanpeer leg) and the CPU seconds each side used per leg. `--sources 2` adds a
second source with the same file and prints the aggregate rate and the per-source split.
The machine is shared: each leg prints how many cores the rest of the host used meanwhile (host
busy time from this machine's /proc/stat minus the legs' own CPU; meaningful with a local engine),
a leg under load is marked with `*`. Asserts nothing about time.

    .venv/bin/python benchmarks/bench_lane_containers.py [--runs 3] [--size-gib 2] [--sources 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from harness.backends.base import GAMES, PeerSpec
from harness.backends.docker import DockerBackend, sweep_run
from harness.backends.engines import run_engines
from harness.peer import PeerHandle
from peer.catalog import load_catalog

MIB = 1024 * 1024
GIB = 1024 * MIB
GAME = "css"
RAW_PORT = 47001
LOADED = 0.2  # cores of other work during a leg that mark it as measured under load

SENDER = """
import json, os, resource, socket, sys
path, port = sys.argv[1], int(sys.argv[2])
srv = socket.create_server(("0.0.0.0", port), reuse_port=True)
conn, _ = srv.accept()
with conn, open(path, "rb") as f:
    conn.sendfile(f)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime}))
"""

RECEIVER = """
import hashlib, json, os, resource, socket, sys, time
host, port, size, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + 30
while True:
    try:
        sock = socket.create_connection((host, port))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
start = time.perf_counter()
buf = bytearray(1 << 20)
view = memoryview(buf)
h = hashlib.sha256()
fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
got = 0
while got < size:
    n = sock.recv_into(view)
    if not n:
        break
    os.pwrite(fd, view[:n], got)
    h.update(view[:n])
    got += n
os.close(fd)
secs = time.perf_counter() - start
os.unlink(dest)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"bytes": got, "secs": secs, "sha256": h.hexdigest(),
                  "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss}))
"""


def proc_cpu_s(peer: PeerHandle) -> float:
    """utime + stime of the peer process (PID 1 of its container), in seconds."""
    rc, out = peer.run("python3", "-c", _PROC_CPU)
    assert rc == 0, out
    return float(out)


_PROC_CPU = (
    "import os; f = open('/proc/1/stat').read().rsplit(')', 1)[1].split(); "
    "print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"
)


def peak_rss_mib(peer: PeerHandle) -> float:
    rc, out = peer.run("grep", "VmHWM", "/proc/1/status")
    assert rc == 0, out
    return int(out.split()[1]) / 1024


def reset_peak_rss(peer: PeerHandle) -> bool:
    """Reset the peer's VmHWM (Linux `clear_refs` 5); False when the kernel refuses."""
    rc, _ = peer.run("sh", "-c", "echo 5 > /proc/1/clear_refs")
    return rc == 0


def host_busy_s() -> tuple[float, float]:
    """(busy CPU seconds of the whole host so far, a monotonic clock), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), time.monotonic()


def others_load(before: tuple[float, float], ours_cpu_s: float) -> float:
    """Cores' worth of CPU the rest of the machine used during a leg (host busy minus ours)."""
    busy, now = host_busy_s()
    return max(0.0, (busy - before[0] - ours_cpu_s) / max(now - before[1], 1e-6))


@dataclass
class Leg:
    kind: str
    mib_per_s: float
    client_cpu_s: float
    source_cpu_s: float
    others: float  # cores used by everything else on the host during the leg
    rss_mib: float = 0.0
    split: dict[str, int] | None = None

    @property
    def loaded(self) -> bool:
        return self.others > LOADED


def host_of(peer: PeerHandle) -> str:
    return peer.addr.rsplit(":", 1)[0]


def make_source(backend: DockerBackend, name: str, size: int) -> PeerHandle:
    spec = PeerSpec(name=name, games_tmpfs="1g")  # a sparse file takes no tmpfs pages
    peer = PeerHandle(backend.create(spec), spec)
    peer.start()
    rc, out = peer.run("mkdir", "-p", f"{GAMES}/{GAME}")
    assert rc == 0, out
    rc, out = peer.run("truncate", "-s", str(size), f"{GAMES}/{GAME}/{GAME}.eti")
    assert rc == 0, out
    peer.write(f"{GAME}/version.ini", f"{load_catalog()[GAME]}\n".encode())  # sentinel last
    peer.expect(
        "local-library-changed", where=lambda e: any(g["game_id"] == GAME for g in e["games"])
    )
    return peer


def raw_leg(source: PeerHandle, client: PeerHandle, size: int) -> Leg:
    before = host_busy_s()
    results: dict[str, Any] = {}

    def send() -> None:
        path = f"{GAMES}/{GAME}/{GAME}.eti"
        results["send"] = source.run("python3", "-c", SENDER, path, str(RAW_PORT))

    sender = threading.Thread(target=send)
    sender.start()
    rc, out = client.run(
        "python3", "-c", RECEIVER, host_of(source), str(RAW_PORT), str(size), f"{GAMES}/raw.bin"
    )
    sender.join(timeout=600)
    assert rc == 0, out
    src_rc, src_out = results["send"]
    assert src_rc == 0, src_out
    got, sent = json.loads(out), json.loads(src_out)
    assert got["bytes"] == size, got
    return Leg(
        "raw",
        size / MIB / got["secs"],
        client_cpu_s=got["cpu_s"],
        source_cpu_s=sent["cpu_s"],
        others=others_load(before, got["cpu_s"] + sent["cpu_s"]),
        rss_mib=got["maxrss_kib"] / 1024,
    )


def lanpeer_leg(sources: list[PeerHandle], client: PeerHandle) -> Leg:
    rc, out = client.run("rm", "-rf", f"{GAMES}/{GAME}")
    assert rc == 0, out
    reset_peak_rss(client)
    before = host_busy_s()
    cpu_before = [proc_cpu_s(p) for p in (client, *sources)]
    w = client.download(GAME, install=False, timeout=900)
    assert w.outcome == "download-finished", w.terminal
    cpu_after = [proc_cpu_s(p) for p in (client, *sources)]
    used = [a - b for a, b in zip(cpu_after, cpu_before, strict=True)]
    return Leg(
        "lanpeer",
        float(w.terminal["mib_per_s"]),
        client_cpu_s=used[0],
        source_cpu_s=sum(used[1:]),
        others=others_load(before, sum(used)),
        rss_mib=peak_rss_mib(client),
        split=dict(w.terminal["bytes_per_source"]),
    )


def summary(legs: list[Leg], kind: str) -> float:
    mine = [leg for leg in legs if leg.kind == kind]
    rates = [leg.mib_per_s for leg in mine]
    median = statistics.median(rates)
    runs = ", ".join(f"{leg.mib_per_s:.0f}{'*' if leg.loaded else ''}" for leg in mine)
    cpu_c = statistics.median(leg.client_cpu_s for leg in mine)
    cpu_s = statistics.median(leg.source_cpu_s for leg in mine)
    print(
        f"{kind:8s}: median {median:7.1f} MiB/s  spread {min(rates):.0f}-{max(rates):.0f}  "
        f"(runs {runs})"
    )
    print(
        f"          CPU s per leg (median): receiver {cpu_c:.2f}, source(s) {cpu_s:.2f}; "
        f"receiver peak RSS {max(leg.rss_mib for leg in mine):.0f} MiB"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--sources", type=int, default=1, choices=(1, 2))
    args = parser.parse_args()
    size = int(args.size_gib * GIB)

    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    engines = run_engines((), os.environ)  # DOCKER_HOST, else the local socket
    os.environ["DOCKER_HOST"] = engines[0]  # testcontainers' clients read it
    backend = DockerBackend(run_id, "master", engines[0], engines)
    try:
        sources = [make_source(backend, f"source{i}", size) for i in range(args.sources)]
        spec = PeerSpec(name="client", games_tmpfs=f"{int(args.size_gib) + 2}g")
        client = PeerHandle(backend.create(spec), spec)
        client.start()
        client.connect(*sources)
        legs: list[Leg] = []
        for run in range(args.runs):
            for kind in ("raw", "lanpeer") if run % 2 == 0 else ("lanpeer", "raw"):
                leg = (
                    raw_leg(sources[0], client, size)
                    if kind == "raw"
                    else lanpeer_leg(sources, client)
                )
                legs.append(leg)
                print(
                    f"  run {run} {kind:8s} {leg.mib_per_s:7.1f} MiB/s  cpu recv "
                    f"{leg.client_cpu_s:.2f}s src {leg.source_cpu_s:.2f}s  rss "
                    f"{leg.rss_mib:.0f} MiB  others {leg.others:.2f} cores"
                    + (f"  split {leg.split}" if leg.split else ""),
                    flush=True,
                )

        print(
            f"\n{size / GIB:.1f} GiB sparse file on tmpfs, {args.sources} source(s), receiver "
            f"on tmpfs, {args.runs} alternated runs per leg, {os.cpu_count()} host cores"
        )
        raw = summary(legs, "raw")
        lan = summary(legs, "lanpeer")
        label = "aggregate " if args.sources > 1 else ""
        print(f"lanpeer {label}/ raw TCP (one stream): {lan / raw:.2f}")
        if args.sources > 1:
            for leg in (x for x in legs if x.kind == "lanpeer"):
                total = sum((leg.split or {}).values()) or 1
                parts = ", ".join(
                    f"{a}: {b / total:.0%}" for a, b in sorted((leg.split or {}).items())
                )
                print(f"  per-source split: {parts}")
        if any(leg.loaded for leg in legs):
            print(f"* load seen: other work used more than {LOADED} cores during that leg")
    finally:
        backend.close()
        sweep_run(run_id, engines)


if __name__ == "__main__":
    main()
