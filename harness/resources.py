"""A peer's CPU time and memory as its kernel counts them, read from /proc in the peer's world.

Used for figures, never for assertions on speed: `sample` returns cumulative CPU seconds (user +
system, every thread of the peer), the current RSS and the peak RSS since the last `reset_peak`
(Linux's `clear_refs` 5 resets VmHWM), so a scenario can take the peak of one operation only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from harness.peer import PeerHandle

_SCRIPT = """\
import json, os, sys
pid = sys.argv[1]
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
    pid = str(peer.process.pid())
    rc, out = peer.run("python3", "-c", _SCRIPT, pid, "reset" if reset_peak else "read")
    assert rc == 0, f"cannot read /proc/{pid} of {peer.name}: {out[-300:]!r}"
    data = json.loads(out)
    return Usage(float(data["cpu_s"]), int(data["rss_kib"]), int(data["peak_kib"]))
