"""A peer's CPU time and memory as its kernel counts them, read from /proc in the peer's world.

Used for figures, never for assertions on speed: `sample` returns cumulative CPU seconds (user +
system, every thread of the peer), the current RSS and the peak RSS since the last `reset_peak`
(Linux's `clear_refs` 5 resets VmHWM), so a scenario can take the peak of one operation only.
The peer is the one process whose argv holds `--state-dir` and its state dir, whatever the
backend (a container's pid 1, a local subprocess).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.peer import PeerHandle

_SCRIPT = """\
import json, os, sys
def argv(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\\0")
    except OSError:
        return []
mine = [p for p in os.listdir("/proc") if p.isdigit()
        and any(a == "--state-dir" and b == sys.argv[1] for a, b in zip(argv(p), argv(p)[1:]))]
if len(mine) != 1:
    sys.exit(f"{len(mine)} processes run with --state-dir {sys.argv[1]}")
pid = mine[0]
if sys.argv[2] == "reset":
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
kib = lambda key: int(status[key].split()[0])
ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
print(json.dumps({"cpu_s": ticks / os.sysconf("SC_CLK_TCK"), "rss_kib": kib("VmRSS"),
                  "peak_kib": kib("VmHWM")}))
"""


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # cumulative since the peer started
    rss_kib: int
    peak_kib: int  # since the peer started or since the last reset


def sample(peer: PeerHandle, reset_peak: bool = False) -> Usage:
    state = peer.process.state_path("").rstrip("/")
    # process.run, not peer.run: a measurement, not a lab action for the timeline
    rc, out = peer.process.run(["python3", "-c", _SCRIPT, state, "reset" if reset_peak else "read"])
    assert rc == 0, f"cannot read /proc of {peer.name}: {out[-300:]!r}"
    data = json.loads(out)
    return Usage(float(data["cpu_s"]), int(data["rss_kib"]), int(data["peak_kib"]))
