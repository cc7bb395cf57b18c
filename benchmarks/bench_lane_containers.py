"""The fast lane between two peer containers, against raw TCP on the same path, in one run.

Two containers of the peer image on one Docker network, both with a tmpfs games root. The
source holds a sparse 2 GiB archive on its tmpfs (so neither leg measures the engine's storage
driver: fuse-overlayfs reads a container layer slowly the first time). The legs run in one
sitting, their order rotated each run:

- raw TCP (`raw1-sha256`, `raw2-sha256`, `raw2-blake3`, `raw2-none`): a one-shot sender in the
  source container `sendfile`s the file over one or two connections (each its half); the
  receiver in the client container runs one thread per connection that `recv_into`s a reused
  1 MiB buffer, `pwrite`s it to its tmpfs and hashes it with SHA-256, BLAKE3 or nothing.
  `raw2-none` is issue 20's baseline: what the path gives with no check at all;
- lanpeer: the client peer downloads the same game from the source peer (`download-finished`'s
  own `mib_per_s`).

Before the legs, `describe` asks each source for the game's descriptors twice with
`peer.probe` (the file touched first, so the first ask hashes all of it and the second is
answered from the cache): the source side of a first download, in seconds and source CPU.

It prints each leg's runs, medians, the ratio of lanpeer to each raw leg, the client peer's peak
RSS (VmHWM, reset before each lanpeer leg) and the CPU seconds each side used per leg.
`--sources 2`, `4`, `8` or `16` (X07's fan-out) adds sources with the same file and prints the
aggregate rate and the per-source split (raw legs are still from one source); the `lanpeer1`
leg is a second client, linked to the first source only, downloading the same game: one source
against N in one run.
The machine is shared: each leg prints how many cores the rest of the host used meanwhile (host
busy time from this machine's /proc/stat minus the legs' own CPU; meaningful with a local
engine), a leg under load is marked with `*`. Asserts nothing about time.

    .venv/bin/python benchmarks/bench_lane_containers.py [--runs 3] [--size-gib 2] [--sources 2]
        [--legs raw1-sha256,raw2-sha256,raw2-blake3,raw2-none,lanpeer,lanpeer1]
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
from peer.cli import DEFAULT

MIB = 1024 * 1024
GIB = 1024 * MIB
GAME = "css"
RAW_PORT = 47001
LOADED = 0.2  # cores of other work during a leg that mark it as measured under load

SENDER = """
import json, os, resource, socket, sys, threading
path, port, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
srv = socket.create_server(("0.0.0.0", port), reuse_port=True)
def serve(conn):
    with conn, open(path, "rb") as f:
        offset, count = (int(x) for x in conn.makefile("rb").readline().split())
        conn.sendfile(f, offset, count)
threads = [threading.Thread(target=serve, args=(srv.accept()[0],)) for _ in range(streams)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime}))
"""

# Each stream is one thread: recv_into a reused 1 MiB buffer, pwrite it at its place, and hash
# it (`sha256`, `blake3`, or `none`), so N streams hash on N cores as lanpeer's lane threads do.
RECEIVER = """
import hashlib, json, os, resource, socket, sys, threading, time
host, port, size, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
streams, algo = int(sys.argv[5]), sys.argv[6]
if algo == "blake3":
    import blake3
    make = blake3.blake3
elif algo == "sha256":
    make = hashlib.sha256
else:
    make = None
def connect():
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection((host, port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
part = -(-size // streams)
got = [0] * streams
digests = [""] * streams
errors = []
def receive(i, sock):
    try:
        work(i, sock)
    except Exception as exc:
        errors.append(repr(exc))
def work(i, sock):
    offset, count = i * part, min(part, size - i * part)
    sock.sendall(f"{offset} {count}\\n".encode())
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    h = make() if make else None
    n_got = 0
    with sock:
        while n_got < count:
            n = sock.recv_into(view, min(len(buf), count - n_got))
            if not n:
                break
            os.pwrite(fd, view[:n], offset + n_got)
            if h is not None:
                h.update(view[:n])
            n_got += n
    got[i] = n_got
    digests[i] = h.hexdigest() if h is not None else ""
socks = [connect() for _ in range(streams)]
start = time.perf_counter()
threads = [threading.Thread(target=receive, args=(i, s)) for i, s in enumerate(socks)]
for t in threads:
    t.start()
for t in threads:
    t.join()
os.close(fd)
secs = time.perf_counter() - start
os.unlink(dest)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"bytes": sum(got), "secs": secs, "digests": digests, "errors": errors,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss}))
"""

# The raw legs: (name, streams, digest), each against the same source file and receiver tmpfs.
RAW_LEGS = {
    "raw1-sha256": (1, "sha256"),
    "raw2-sha256": (2, "sha256"),
    "raw2-blake3": (2, "blake3"),
    "raw2-none": (2, "none"),
    "raw1-none": (1, "none"),  # one connection, no check: a stream's path (bench_stream_install)
    "raw1-blake3": (1, "blake3"),  # and checked as a stream is, in its one receiving thread
}
DEFAULT_LEGS = ("raw1-sha256", "raw2-sha256", "raw2-none", "lanpeer")
# `lanpeer1`: a second client peer, linked to the first source only, downloads the same game:
# the one-source rate in the same run as the aggregate of `--sources N` (issue 20).
PEER_LEGS = ("lanpeer", "lanpeer1")
BASELINE = "raw2-none"  # the ceiling: lanpeer's goal is 0.9 of it (issue 20)


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


def raw_leg(
    kind: str, source: PeerHandle, client: PeerHandle, size: int, path: str | None = None
) -> Leg:
    """`size` bytes of the source's `path` (the game's file) over raw TCP, as `kind` says."""
    streams, algo = RAW_LEGS[kind]
    path = path or f"{GAMES}/{GAME}/{GAME}.eti"
    before = host_busy_s()
    results: dict[str, Any] = {}

    def send() -> None:
        results["send"] = source.run("python3", "-c", SENDER, path, str(RAW_PORT), str(streams))

    sender = threading.Thread(target=send)
    sender.start()
    rc, out = client.run(
        "python3",
        "-c",
        RECEIVER,
        host_of(source),
        str(RAW_PORT),
        str(size),
        f"{GAMES}/raw.bin",
        str(streams),
        algo,
    )
    sender.join(timeout=600)
    assert rc == 0, out
    src_rc, src_out = results["send"]
    assert src_rc == 0, src_out
    got, sent = json.loads(out), json.loads(src_out)
    assert got["bytes"] == size, got
    return Leg(
        kind,
        size / MIB / got["secs"],
        client_cpu_s=got["cpu_s"],
        source_cpu_s=sent["cpu_s"],
        others=others_load(before, got["cpu_s"] + sent["cpu_s"]),
        rss_mib=got["maxrss_kib"] / 1024,
    )


def probe_describe(sources: list[PeerHandle], client: PeerHandle, chunk_size: int) -> Leg:
    """One GetGame of every source, asked at once from the client (`peer.probe`): what a
    download's first step costs each source. Reported as seconds and GiB/s of the slowest."""
    request = json.dumps({"type": "get-game", "game_id": GAME, "chunk_size": chunk_size})
    before = host_busy_s()
    cpu_before = [proc_cpu_s(p) for p in sources]
    secs: list[float] = []

    def ask(source: PeerHandle) -> None:
        started = time.perf_counter()
        rc, out = client.run("python3", "-m", "peer.probe", source.addr, "--request", request)
        assert rc == 0 and b"game-files" in out, out[-2000:]
        secs.append(time.perf_counter() - started)

    askers = [threading.Thread(target=ask, args=(p,)) for p in sources]
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    used = sum(proc_cpu_s(p) for p in sources) - sum(cpu_before)
    return Leg(
        "describe", max(secs), client_cpu_s=0.0, source_cpu_s=used, others=others_load(before, used)
    )


def lanpeer_leg(sources: list[PeerHandle], client: PeerHandle, kind: str = "lanpeer") -> Leg:
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
        kind,
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
        f"{kind:11s}: median {median:7.1f} MiB/s  spread {min(rates):.0f}-{max(rates):.0f}  "
        f"(runs {runs})"
    )
    print(
        f"          CPU s per leg (median): receiver {cpu_c:.2f}, source(s) {cpu_s:.2f}; "
        f"receiver peak RSS {max(leg.rss_mib for leg in mine):.0f} MiB"
    )
    return median


def describe(sources: list[PeerHandle], client: PeerHandle, size: int) -> None:
    """The source side: the first GetGame after a file changed hashes all of it (cold), a
    second is answered from the descriptor cache (warm: the probe's own cost, subtracted)."""
    chunk_size = DEFAULT.chunk_size
    for source in sources:
        rc, out = source.run("touch", f"{GAMES}/{GAME}/{GAME}.eti")  # a new mtime: re-hashed
        assert rc == 0, out
    cold = probe_describe(sources, client, chunk_size)
    warm = probe_describe(sources, client, chunk_size)
    hashing = max(cold.mib_per_s - warm.mib_per_s, 1e-6)
    print(
        f"  describe (first GetGame, {len(sources)} source(s) at once): cold {cold.mib_per_s:.2f}"
        f" s, cached {warm.mib_per_s:.2f} s, so hashing {hashing:.2f} s = "
        f"{size / GIB / hashing:.2f} GiB/s per source; source CPU {cold.source_cpu_s:.2f} s "
        f"cold, {warm.source_cpu_s:.2f} s cached; others {cold.others:.2f} cores",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-gib", type=float, default=2.0)
    # 16: X07's fan-out, at a size that means something (X07 itself moves 8 MiB).
    parser.add_argument("--sources", type=int, default=1, choices=(1, 2, 4, 8, 16))
    parser.add_argument(
        "--legs",
        default=",".join(DEFAULT_LEGS),
        help=f"comma-separated, of lanpeer and {', '.join(RAW_LEGS)}",
    )
    args = parser.parse_args()
    size = int(args.size_gib * GIB)
    kinds = args.legs.split(",")
    assert all(k in PEER_LEGS or k in RAW_LEGS for k in kinds), kinds

    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    engines = run_engines((), os.environ)  # DOCKER_HOST, else the local socket
    os.environ["DOCKER_HOST"] = engines[0]  # testcontainers' clients read it
    backend = DockerBackend(run_id, "master", engines[0], engines)
    try:
        sources = [make_source(backend, f"source{i}", size) for i in range(args.sources)]
        # Room for the downloaded game and a raw leg's file at once (a raw leg may follow one).
        spec = PeerSpec(name="client", games_tmpfs=f"{int(args.size_gib) * 2 + 2}g")
        client = PeerHandle(backend.create(spec), spec)
        client.start()
        client.connect(*sources)
        solo = None
        if "lanpeer1" in kinds:
            solo_spec = PeerSpec(name="client1", games_tmpfs=f"{int(args.size_gib) * 2 + 2}g")
            solo = PeerHandle(backend.create(solo_spec), solo_spec)
            solo.start()
            solo.connect(sources[0])
        if "lanpeer" in kinds:
            describe(sources, client, size)
        legs: list[Leg] = []
        for run in range(args.runs):
            for kind in kinds[run % len(kinds) :] + kinds[: run % len(kinds)]:
                if kind == "lanpeer":
                    leg = lanpeer_leg(sources, client)
                elif kind == "lanpeer1":
                    assert solo is not None
                    leg = lanpeer_leg(sources[:1], solo, "lanpeer1")
                else:
                    leg = raw_leg(kind, sources[0], client, size)
                legs.append(leg)
                print(
                    f"  run {run} {kind:11s} {leg.mib_per_s:7.1f} MiB/s  cpu recv "
                    f"{leg.client_cpu_s:.2f}s src {leg.source_cpu_s:.2f}s  rss "
                    f"{leg.rss_mib:.0f} MiB  others {leg.others:.2f} cores"
                    + (f"  split {leg.split}" if leg.split else ""),
                    flush=True,
                )

        print(
            f"\n{size / GIB:.1f} GiB sparse file on tmpfs, {args.sources} source(s), receiver "
            f"on tmpfs, {args.runs} runs of each leg (order rotated per run), "
            f"{os.cpu_count()} host cores; others median "
            f"{statistics.median(leg.others for leg in legs):.2f} cores "
            f"(max {max(leg.others for leg in legs):.2f})"
        )
        medians = {kind: summary(legs, kind) for kind in kinds}
        if "lanpeer" in medians:
            label = "aggregate " if args.sources > 1 else ""
            for kind in (k for k in kinds if k != "lanpeer"):
                note = "  <- the issue-20 baseline (goal 0.90)" if kind == BASELINE else ""
                print(f"lanpeer {label}/ {kind}: {medians['lanpeer'] / medians[kind]:.2f}{note}")
        if "lanpeer1" in medians:
            print("  (lanpeer1: one source, from a client linked to that source only)")
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
