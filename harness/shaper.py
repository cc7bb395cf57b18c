"""Delay, jitter and loss on a UDP link without netem: a relay the lab puts in front of a peer.

The kernel here has no `sch_netem`, so the control plane (QUIC, UDP) is shaped in userspace:
a small asyncio relay, started by the lab in a container of its own on the scenario's network,
listens on one port and forwards every datagram to one peer, each after its own delay
(normal around `delay_ms`, spread `jitter_ms`, never negative, so datagrams may be reordered as
netem reorders them) unless it is lost (`loss_percent`). Replies come back the same way, shaped
the same way, so a round trip gets about twice the delay. A peer that dials the relay's address
instead of the target's talks to the target through the shaped link.

`RELAY` and `ECHO` are the programs (run with `python3 -c`); `shape_of` is the pure measurement
the lab's test of the shaper uses: what delay, jitter and loss a set of round trips achieved.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

RELAY = r"""
import asyncio, random, sys
listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
delay, jitter, loss = float(sys.argv[4]) / 1e3, float(sys.argv[5]) / 1e3, float(sys.argv[6]) / 100
rng = random.Random(int(sys.argv[7]))

slack = [0.0]  # how late timers fire here (epoll's millisecond ticks, a busy host), learned

def later(send, data):
    if rng.random() < loss:
        return
    loop = asyncio.get_running_loop()
    at = loop.time() + max(0.0, rng.gauss(delay, jitter) - slack[0])

    def fire():
        slack[0] = 0.95 * slack[0] + 0.05 * max(0.0, loop.time() - at)
        send(data)

    loop.call_at(at, fire)

class Upstream(asyncio.DatagramProtocol):
    def __init__(self, front, client):
        self.front, self.client = front, client
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        later(lambda d: self.front.transport.sendto(d, self.client), data)

class Front(asyncio.DatagramProtocol):
    def __init__(self):
        self.upstreams = {}
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, client):
        up = self.upstreams.get(client)
        if up is None:
            up = self.upstreams[client] = asyncio.ensure_future(
                asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: Upstream(self, client), remote_addr=(host, port)))
        def send(d, up=up):
            if up.done():
                up.result()[0].sendto(d)
            else:
                up.add_done_callback(lambda f: f.result()[0].sendto(d))
        later(send, data)

async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Front, local_addr=("0.0.0.0", listen_port))
    print("relaying", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("echoing", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data, addr)
"""

PROBE = r"""
import json, socket, sys, time
host, port, count, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent, rtts = {}, []

def drain(until):
    while True:
        try:
            data, _ = s.recvfrom(64)
        except BlockingIOError:
            if time.monotonic() >= until:
                return
            time.sleep(0.0002)
            continue
        n = int.from_bytes(data[:4], "big")
        if n in sent:
            rtts.append(time.monotonic() - sent.pop(n))

for i in range(count):
    sent[i] = time.monotonic()
    s.sendto(i.to_bytes(4, "big"), (host, port))
    drain(sent[i] + every)
drain(time.monotonic() + 2.0)
print(json.dumps({"sent": count, "rtts_ms": [r * 1e3 for r in rtts]}))
"""


@dataclass(frozen=True)
class Shape:
    """What a link did, one way: mean delay and its spread (ms), and loss (percent)."""

    delay_ms: float
    jitter_ms: float
    loss_percent: float


def _iqr(values: list[float]) -> float:
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q3 - q1


NORMAL_IQR = 1.349  # a normal distribution's interquartile range, in standard deviations


def shape_of(sent: int, rtts_ms: list[float], baseline_ms: list[float] | None = None) -> Shape:
    """The one-way shape the relay added, from `sent` round trips through a link shaped the
    same both ways: delay is half the median round trip, jitter the round trips' spread over
    sqrt 2 (two independent delays add their variances), and a round trip survives both ways'
    loss. With `baseline_ms`, round trips through an unshaped relay on the same path, what the
    path itself costs (the network, the relay's own scheduling) is taken off first. Median and
    interquartile range, not mean and variance: a busy host's rare stalls must not decide."""
    if sent <= 0 or len(rtts_ms) < 4:
        raise ValueError("too few round trips to measure a shape")
    base_median, base_iqr = 0.0, 0.0
    if baseline_ms and len(baseline_ms) >= 4:
        base_median, base_iqr = statistics.median(baseline_ms), _iqr(baseline_ms)
    spread = max(_iqr(rtts_ms) ** 2 - base_iqr**2, 0.0) ** 0.5 / NORMAL_IQR
    survived = len(rtts_ms) / sent
    return Shape(
        delay_ms=(statistics.median(rtts_ms) - base_median) / 2,
        jitter_ms=spread / 2**0.5,
        loss_percent=100 * (1 - survived**0.5),
    )
