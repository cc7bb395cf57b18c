"""A streamed install at size, against a download then an install and `unrar p`, in one run.

Issue 20: S39's figure comes from a 3 MiB game. Here a source peer holds two 2 GiB games as
RAR archives on its tmpfs, one stored (`rar -m0`) and one solid (`rar -m1 -s`), each of eight
256 MiB files of base64 text of random bytes (compresses to about 3/4, so the solid archive
really decompresses). A client peer, also on tmpfs, and both with `--unrar`. The archives are
built once on this machine (cached in `--cache`) and piped into the source's tmpfs.

Per archive, the legs alternate, their order rotated each run:

- `unrar-p`: the source's own `unrar p` of the archive to /dev/null, inside its container: the
  extraction ceiling (extracted bytes / wall seconds);
- `stream`: the client's `stream-install`: command to `install-finished` (the rate the issue
  asks to be 0.8 of `unrar-p`), and `download-finished`'s own rate (the streaming phase). The
  listing's per-entry digest (one `unrar p` of the source's own, taken the first time it is
  asked and cached) is measured by a first, cold stream before the legs;
- `dl+install`: a download of the archive (chunks verified) followed by its install (the
  client's own `unrar`), command to `install-finished`;
- `raw-tcp`: the archive's bytes from the source's tmpfs to the client's over one raw TCP
  connection (`sendfile`, then `recv_into` + `pwrite`, no check), as `bench_lane_containers`'s
  `raw1-none`: the path's ceiling. A stream can go no faster than the slower of the path and
  the extraction, so each leg is also shown against that (`/ ceiling`); for a stored archive
  `unrar p` only copies, and the path is the lower of the two (the source sends a stored
  archive's members as they lie in it, by `sendfile`, as this leg sends the whole archive);
- `raw-tcp-b3`: the same, with BLAKE3 of every byte in the one receiving thread (`raw1-blake3`),
  as a stream's receiver checks it: what one connection carries once every byte is checked.

Each leg prints its rate, the ratio to `unrar-p` in the same run, the CPU seconds of each side
(the peer and the `unrar` children it waited for), the client's peak RSS (VmHWM, reset before
each leg) and how many cores the rest of the host used meanwhile. Asserts nothing about time.

    .venv/bin/python benchmarks/bench_stream_install.py [--runs 3] [--size-gib 2]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench_lane_containers import (
    LOADED,
    host_busy_s,
    others_load,
    peak_rss_mib,
    raw_leg,
    reset_peak_rss,
)

from harness.backends.base import GAMES, PeerSpec
from harness.backends.docker import DockerBackend, sweep_run
from harness.backends.engines import run_engines
from harness.peer import PeerHandle
from peer.catalog import load_catalog

MIB = 1024 * 1024
GIB = 1024 * MIB
KINDS = {"stored": ("css", ["-m0"]), "solid": ("bf1942", ["-m1", "-s"])}
FILES = 8
LEGS = ("unrar-p", "raw-tcp", "stream", "raw-tcp-b3", "dl+install")  # rotated per run

_CPU = (
    "import os; f = open('/proc/1/stat').read().rsplit(')', 1)[1].split(); "
    "print(sum(int(x) for x in f[11:15]) / os.sysconf('SC_CLK_TCK'))"
)

UNRAR_P = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
subprocess.run([sys.argv[1], "p", "-inul", sys.argv[2]], stdout=subprocess.DEVNULL, check=True)
secs = time.perf_counter() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"secs": secs, "cpu_s": ru.ru_utime + ru.ru_stime}))
"""


def cpu_s(peer: PeerHandle) -> float:
    """utime + stime of the peer (PID 1) and of the children it waited for (its unrars)."""
    rc, out = peer.run("python3", "-c", _CPU)
    assert rc == 0, out
    return float(out)


def build_archive(cache: Path, kind: str, size: int) -> tuple[Path, int]:
    """The archive of `kind` (cached), and the bytes its files hold."""
    cache.mkdir(parents=True, exist_ok=True)
    per_file = size // FILES
    data = cache / f"data-{per_file}"
    if not data.is_dir():
        tmp = cache / f"data-{per_file}.tmp"
        tmp.mkdir(exist_ok=True)
        for i in range(FILES):
            with open(tmp / f"game{i}.dat", "wb") as f:
                left = per_file
                while left:
                    block = base64.b64encode(os.urandom(3 * MIB // 4))[: min(MIB, left)]
                    f.write(block)
                    left -= len(block)
        tmp.rename(data)
    archive = cache / f"{kind}-{per_file}.rar"
    if not archive.exists():
        flags = KINDS[kind][1]
        tmp_rar = archive.with_suffix(".tmp.rar")
        tmp_rar.unlink(missing_ok=True)
        names = sorted(p.name for p in data.iterdir())
        subprocess.run(
            ["rar", "a", "-idq", "-ep1", *flags, str(tmp_rar), *names], cwd=data, check=True
        )
        tmp_rar.rename(archive)
    return archive, per_file * FILES


def container_id(peer: PeerHandle) -> str:
    return str(peer.process.id())  # type: ignore[attr-defined]


def seed_source(source: PeerHandle, game: str, archive: Path) -> None:
    """Pipe the archive into the source's tmpfs (docker cp cannot reach a tmpfs)."""
    rc, out = source.run("mkdir", "-p", f"{GAMES}/{game}")
    assert rc == 0, out
    with open(archive, "rb") as f:
        subprocess.run(
            [
                "docker",
                "exec",
                "-i",
                container_id(source),
                "sh",
                "-c",
                f"cat > {GAMES}/{game}/{game}.eti",
            ],
            stdin=f,
            check=True,
        )
    source.write(f"{game}/version.ini", f"{load_catalog()[game]}\n".encode())  # sentinel last
    source.expect(
        "local-library-changed", where=lambda e: any(g["game_id"] == game for g in e["games"])
    )


@dataclass
class Leg:
    kind: str
    leg: str
    mib_per_s: float
    phase_mib_per_s: float  # download-finished's own rate (the transfer phase), else the same
    client_cpu_s: float
    source_cpu_s: float
    others: float
    rss_mib: float = 0.0


def reset_client(client: PeerHandle, game: str) -> None:
    rc, out = client.run("rm", "-rf", f"{GAMES}/{game}")
    assert rc == 0, out


def unrar_leg(kind: str, source: PeerHandle, unrar: str, game: str, size: int) -> Leg:
    before = host_busy_s()
    rc, out = source.run("python3", "-c", UNRAR_P, unrar, f"{GAMES}/{game}/{game}.eti")
    assert rc == 0, out
    got = json.loads(out)
    rate = size / MIB / got["secs"]
    return Leg(kind, "unrar-p", rate, rate, 0.0, got["cpu_s"], others_load(before, got["cpu_s"]))


def path_leg(
    kind: str, source: PeerHandle, client: PeerHandle, game: str, size: int, leg: str
) -> Leg:
    """The archive over raw TCP, checked (`raw-tcp-b3`) or not (the rate counts the files'
    bytes, as the other legs do, over the time the archive's own bytes took)."""
    reset_client(client, game)  # the client's tmpfs holds one copy at a time
    archive = f"{GAMES}/{game}/{game}.eti"
    rc, out = source.run("stat", "-c", "%s", archive)
    assert rc == 0, out
    raw = raw_leg(
        "raw1-blake3" if leg == "raw-tcp-b3" else "raw1-none", source, client, int(out), archive
    )
    reset_client(client, "raw.bin")
    secs = int(out) / MIB / raw.mib_per_s
    rate = size / MIB / secs
    return Leg(kind, leg, rate, rate, raw.client_cpu_s, raw.source_cpu_s, raw.others)


def peer_leg(
    kind: str, leg: str, source: PeerHandle, client: PeerHandle, game: str, size: int
) -> Leg:
    reset_client(client, game)
    reset_peak_rss(client)
    before = host_busy_s()
    cpu_before = (cpu_s(client), cpu_s(source))
    started = time.perf_counter()
    if leg == "stream":
        w = client.stream_install(game, timeout=900)
    else:
        w = client.download(game, install=True, timeout=900)
    secs = time.perf_counter() - started
    assert w.outcome == "install-finished", w.terminal
    (finished,) = client.events("download-finished", since=w.start, until=w.end)
    used = (cpu_s(client) - cpu_before[0], cpu_s(source) - cpu_before[1])
    return Leg(
        kind,
        leg,
        size / MIB / secs,
        float(finished["mib_per_s"]),
        used[0],
        used[1],
        others_load(before, sum(used)),
        peak_rss_mib(client),
    )


def show(leg: Leg) -> None:
    print(
        f"  {leg.kind:6s} {leg.leg:10s} {leg.mib_per_s:7.1f} MiB/s "
        f"(phase {leg.phase_mib_per_s:7.1f})"
        f"  cpu client {leg.client_cpu_s:5.2f}s source {leg.source_cpu_s:5.2f}s  rss "
        f"{leg.rss_mib:4.0f} MiB  others {leg.others:.2f} cores",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--kinds", default="stored,solid")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/lanpeer-bench-stream"))
    args = parser.parse_args()
    size = int(args.size_gib * GIB)
    kinds = args.kinds.split(",")
    archives = {}
    for kind in kinds:
        started = time.perf_counter()
        archives[kind] = build_archive(args.cache, kind, size)
        print(
            f"  {kind} archive {archives[kind][0].stat().st_size / MIB:.0f} MiB for "
            f"{archives[kind][1] / MIB:.0f} MiB of files ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )

    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    engines = run_engines((), os.environ)
    backend = DockerBackend(run_id, "master", engines[0], engines)
    unrar = backend.unrar
    try:
        held = sum(a.stat().st_size for a, _ in archives.values())
        spec = PeerSpec(name="source", games_tmpfs=f"{held // GIB + 1}g", args=("--unrar", unrar))
        source = PeerHandle(backend.create(spec), spec)
        source.start()
        for kind in kinds:
            seed_source(source, KINDS[kind][0], archives[kind][0])
        room = max(a.stat().st_size + n for a, n in archives.values())
        cspec = PeerSpec(name="client", games_tmpfs=f"{room // GIB + 1}g", args=("--unrar", unrar))
        client = PeerHandle(backend.create(cspec), cspec)
        client.start()
        client.connect(source)
        legs: list[Leg] = []
        for kind in kinds:
            game, total = KINDS[kind][0], archives[kind][1]
            first = peer_leg(kind, "stream", source, client, game, total)
            print(f"  {kind}: the first stream (the source's listing digest pass included):")
            show(first)
            peer_leg(kind, "dl+install", source, client, game, total)  # the source's describe
            for run in range(args.runs):
                for leg in LEGS[run % len(LEGS) :] + LEGS[: run % len(LEGS)]:
                    if leg == "unrar-p":
                        one = unrar_leg(kind, source, unrar, game, total)
                    elif leg.startswith("raw-tcp"):
                        one = path_leg(kind, source, client, game, total, leg)
                    else:
                        one = peer_leg(kind, leg, source, client, game, total)
                    legs.append(one)
                    show(one)
            reset_client(client, game)

        print(
            f"\n{size / GIB:.1f} GiB of files per archive, {args.runs} runs per leg, "
            f"{os.cpu_count()} host cores; others median "
            f"{statistics.median(leg.others for leg in legs):.2f} cores "
            f"(max {max(leg.others for leg in legs):.2f})"
        )
        print(
            "| archive | leg | median MiB/s | runs | / unrar p | / ceiling | phase MiB/s "
            "| client CPU s | source CPU s | client peak RSS |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind in kinds:
            mine = [x for x in legs if x.kind == kind]
            unrar_p = statistics.median(x.mib_per_s for x in mine if x.leg == "unrar-p")
            path = statistics.median(x.mib_per_s for x in mine if x.leg == "raw-tcp")
            ceiling = min(unrar_p, path)
            for name in LEGS:
                these = [x for x in mine if x.leg == name]
                med = statistics.median(x.mib_per_s for x in these)
                runs = ", ".join(
                    f"{x.mib_per_s:.0f}{'*' if x.others > LOADED else ''}" for x in these
                )
                print(
                    f"| {kind} | {name} | {med:.0f} | {runs} | {med / unrar_p:.2f} | "
                    f"{med / ceiling:.2f} | "
                    f"{statistics.median(x.phase_mib_per_s for x in these):.0f} | "
                    f"{statistics.median(x.client_cpu_s for x in these):.2f} | "
                    f"{statistics.median(x.source_cpu_s for x in these):.2f} | "
                    f"{max(x.rss_mib for x in these):.0f} MiB |"
                )
        if any(leg.others > LOADED for leg in legs):
            print(f"* load seen: other work used more than {LOADED} cores during that leg")
    finally:
        backend.close()
        sweep_run(run_id, engines)


if __name__ == "__main__":
    main()
