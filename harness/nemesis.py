"""The lab's nemesis: the faults a real LAN makes, applied to a scenario's peers and undone.

Jepsen keeps workload, nemesis and checker apart; so does the lab. A scenario drives the
workload through its peers' handles, asks the nemesis for a fault, and checks the outcome. Each
fault is a `Fault` on the lab's timeline from the moment it bites to its heal, drawn in the
report as a band, and healed at teardown even when the test fails.

Mechanisms (no `sch_netem` on this kernel, so no netem):

* `partition` (both ways or one way), `loss`: iptables rules in the peers' network namespaces,
  in a chain per fault. DROP, never REJECT: a silent cut, as a pulled cable is, with no RST and
  no ICMP, and existing connections included (the rules match every packet, not new flows).
  Loss uses the `statistic` match (random, per packet).
* `rate_cap`: a `tbf` qdisc on the peer's interface: the network, not the peer's own flag,
  makes it slow (egress: what the peer sends).
* `pause`: the whole peer frozen (cgroup freezer in Docker, SIGSTOP locally), a closed lid.

The network faults run iptables and tc in a short-lived sidecar container that joins the peer's
network namespace with NET_ADMIN (`Backend.net_admin`), so peer containers stay unprivileged
and any engine works, remote ones included. Rules live in the peer's namespace and die with it:
nothing is left on the host even when a worker dies. Pure parts (which rules a fault makes) are
plain functions, tested without Docker in tests/test_nemesis.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.shaper import RELAY

IFACE = "eth0"
RELAY_PORT = 9000
MECHANISM = (
    "iptables DROP and statistic, tc tbf, cgroup freezer, a userspace UDP relay for delay and "
    "jitter (no netem on this kernel)"
)


class _Process(Protocol):
    def exited(self) -> bool: ...


class Target(Protocol):
    """What the nemesis needs of a peer (a `Target` in the lab)."""

    @property
    def name(self) -> str: ...
    @property
    def addr(self) -> str: ...
    @property
    def process(self) -> _Process: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class NetAdmin(Protocol):
    """Runs a shell script as root with NET_ADMIN in one peer's network namespace."""

    def __call__(self, peer: Target, script: str) -> tuple[int, bytes]: ...


class Helper(Protocol):
    """Starts a long-lived `python3 -c script args` container on the scenario's network:
    returns it (with `logs` and `remove`, as the Docker SDK's) and its address."""

    def __call__(self, name: str, script: str, args: list[str]) -> tuple[Any, str]: ...


def _ip(peer: Target) -> str:
    return peer.addr.rpartition(":")[0]


# -- rules (pure) ---------------------------------------------------------------------------


def chain(fault_id: int) -> str:
    return f"LANPEER-{fault_id}"


def install_script(fault_id: int, rules: Sequence[str]) -> str:
    """A chain for one fault, hooked first into INPUT and OUTPUT, holding `rules`."""
    name = chain(fault_id)
    lines = [
        "set -e",
        f"iptables -w -N {name}",
        *(f"iptables -w -A {name} {rule}" for rule in rules),
        f"iptables -w -I INPUT 1 -j {name}",
        f"iptables -w -I OUTPUT 1 -j {name}",
    ]
    return "\n".join(lines)


def remove_script(fault_id: int) -> str:
    name = chain(fault_id)
    return "\n".join(
        [
            f"iptables -w -D INPUT -j {name} 2>/dev/null || true",
            f"iptables -w -D OUTPUT -j {name} 2>/dev/null || true",
            f"iptables -w -F {name} 2>/dev/null || true",
            f"iptables -w -X {name} 2>/dev/null || true",
        ]
    )


def drop_rules(sends_to: Sequence[str], hears_from: Sequence[str]) -> list[str]:
    """Drop every packet to `sends_to` leaving, and every packet from `hears_from` arriving."""
    out = [f"-d {ip} -j DROP" for ip in sends_to]
    return out + [f"-s {ip} -j DROP" for ip in hears_from]


def loss_rules(percent: float, others: Sequence[str]) -> list[str]:
    """Drop `percent` of packets leaving, and of packets arriving from `others` (the peers
    outside the lossy set: a packet between two lossy peers is dropped only on leaving)."""
    p = f"{percent / 100:.4f}"
    match = f"-m statistic --mode random --probability {p} -j DROP"
    return [f"-o {IFACE} {match}", *(f"-s {ip} {match}" for ip in others)]


def count_script(fault_id: int) -> str:
    return f"iptables -w -L {chain(fault_id)} -v -x -n"


def dropped(listing: str) -> int:
    """Packets the rules of one `iptables -L -v -x` listing matched (its first column)."""
    total = 0
    for line in listing.splitlines()[2:]:
        words = line.split()
        if words and words[0].isdigit():
            total += int(words[0])
    return total


def tbf_script(mbit: float) -> str:
    # burst: at least rate/HZ; 64 kbit is ample below a gigabit. latency bounds the queue.
    return f"tc qdisc replace dev {IFACE} root tbf rate {mbit}mbit burst 64kbit latency 200ms"


def untbf_script() -> str:
    return f"tc qdisc del dev {IFACE} root 2>/dev/null || true"


# -- faults (the shell) ---------------------------------------------------------------------


@dataclass
class Fault:
    """One fault, from start to heal. `heal()` is idempotent."""

    fault_id: int
    kind: str
    targets: dict[str, Any]
    started: float
    undo: Callable[[], None] = field(repr=False)
    healing: float | None = None  # when the heal began (a side may meet the other before
    healed: float | None = None  # the last rule is gone, when it ended)
    peers: list[Target] = field(default_factory=list, repr=False)  # whose namespace has rules

    def heal(self) -> None:
        if self.healed is None:
            self.healing = time.monotonic()
            self.undo()
            self.healed = time.monotonic()

    @property
    def active(self) -> bool:
        return self.healed is None


class Nemesis:
    """One scenario's fault injector. `record(action, **fields)` puts it on the lab lane."""

    def __init__(
        self, net_admin: NetAdmin | None, record: Callable[..., None], helper: Helper | None = None
    ) -> None:
        self._net_admin = net_admin
        self._helper = helper
        self._record = record
        self._ids = itertools.count(1)
        self.faults: list[Fault] = []

    def _run(self, peer: Target, script: str) -> None:
        if self._net_admin is None:
            raise RuntimeError("network faults need the Docker backend (network namespaces)")
        rc, out = self._net_admin(peer, script)
        if rc != 0:
            raise RuntimeError(f"nemesis script failed on {peer.name} ({rc}): {out[-600:]!r}")

    def _start(self, kind: str, targets: dict[str, Any], undo: Callable[[], None]) -> Fault:
        fault = Fault(next(self._ids), kind, targets, time.monotonic(), undo)
        self.faults.append(fault)
        self._record("fault", fault=fault.fault_id, kind=kind, **targets)
        return fault

    def _rules(
        self, kind: str, targets: dict[str, Any], per_peer: dict[Target, list[str]]
    ) -> Fault:
        fault_id = next(self._ids)
        done: list[Target] = []

        def undo() -> None:
            for peer in done:
                if not peer.process.exited():  # a dead namespace took its rules with it
                    self._run(peer, remove_script(fault_id))
            self._record("heal", fault=fault_id, kind=kind)

        fault = Fault(fault_id, kind, targets, time.monotonic(), undo, peers=done)
        self.faults.append(fault)
        try:
            for peer, rules in per_peer.items():
                self._run(peer, install_script(fault_id, rules))
                done.append(peer)
        except BaseException:
            fault.heal()
            raise
        fault.started = time.monotonic()
        self._record("fault", fault=fault_id, kind=kind, **targets)
        return fault

    def partition(
        self, side_a: Sequence[Target], side_b: Sequence[Target], one_way: bool = False
    ) -> Fault:
        """Cut `side_a` from `side_b` silently. With `one_way`, only packets from `side_a` to
        `side_b` are lost: b does not hear a, a still hears b."""
        ips_a, ips_b = [_ip(p) for p in side_a], [_ip(p) for p in side_b]
        per_peer: dict[Target, list[str]] = {}
        for peer in side_a:
            per_peer[peer] = drop_rules(ips_b, [] if one_way else ips_b)
        for peer in side_b:
            per_peer[peer] = drop_rules([] if one_way else ips_a, ips_a)
        targets = {"side_a": [p.name for p in side_a], "side_b": [p.name for p in side_b]}
        return self._rules("one-way-cut" if one_way else "partition", targets, per_peer)

    def loss(self, peers: Sequence[Target], percent: float, everyone: Sequence[Target]) -> Fault:
        """`percent` random packet loss on every link of `peers` (to any of `everyone`)."""
        outside = [_ip(p) for p in everyone if p not in peers]
        per_peer: dict[Target, list[str]] = {p: loss_rules(percent, outside) for p in peers}
        targets = {"peers": [p.name for p in peers], "percent": percent}
        return self._rules("loss", targets, per_peer)

    def rate_cap(self, peer: Target, mbit: float) -> Fault:
        """What `peer` sends is capped at `mbit` Mbit/s by the network (a tbf qdisc)."""
        self._run(peer, tbf_script(mbit))

        def undo() -> None:
            if not peer.process.exited():
                self._run(peer, untbf_script())
            self._record("heal", fault=fault.fault_id, kind="rate-cap")

        fault = self._start("rate-cap", {"peer": peer.name, "mbit": mbit}, undo)
        return fault

    def pause(self, peer: Target) -> Fault:
        """Freeze `peer` whole (a closed laptop lid); `heal` thaws it."""
        peer.pause()

        def undo() -> None:
            peer.resume()
            self._record("heal", fault=fault.fault_id, kind="pause")

        fault = self._start("pause", {"peer": peer.name}, undo)
        return fault

    def custom(self, kind: str, targets: dict[str, Any], heal: Callable[[], None]) -> Fault:
        """A fault the scenario applied itself (a kill), on the timeline like the others;
        `heal` undoes it (a restart)."""

        def undo() -> None:
            heal()
            self._record("heal", fault=fault.fault_id, kind=kind)

        fault = self._start(kind, targets, undo)
        return fault

    def delay(
        self,
        to: str,
        delay_ms: float,
        jitter_ms: float = 0.0,
        loss_percent: float = 0.0,
        seed: int = 1,
    ) -> Fault:
        """A UDP relay in front of `to` (HOST:PORT, a peer's `addr` for its control plane)
        that delays every datagram each way by about `delay_ms` (spread `jitter_ms`) and loses
        `loss_percent` of them (shaper.py). Dial `fault.targets["relay"]` instead of `to`."""
        if self._helper is None:
            raise RuntimeError("a delayed link needs the Docker backend (a relay container)")
        host, _, port = to.rpartition(":")
        shape = [str(delay_ms), str(jitter_ms), str(loss_percent), str(seed)]
        name = f"relay-{host.replace('.', '-')}-{port}"
        container, ip = self._helper(name, RELAY, [str(RELAY_PORT), host, port, *shape])
        for line in container.logs(stream=True, follow=True):
            if b"relaying" in line:
                break
        else:
            raise RuntimeError(f"the relay in front of {to} did not start")
        targets = {
            "to": to,
            "relay": f"{ip}:{RELAY_PORT}",
            "delay_ms": delay_ms,
            "jitter_ms": jitter_ms,
            "loss_percent": loss_percent,
        }

        def undo() -> None:
            container.remove(force=True)
            self._record("heal", fault=fault.fault_id, kind="delay")

        fault = self._start("delay", targets, undo)
        return fault

    def dropped(self, fault: Fault) -> int:
        """Packets a partition or loss fault has dropped so far, over every peer it touched:
        the proof that the fault bit (a scenario whose fault never fired must not pass)."""
        if self._net_admin is None:
            return 0
        total = 0
        for peer in fault.peers:
            rc, out = self._net_admin(peer, count_script(fault.fault_id))
            if rc == 0:
                total += dropped(out.decode(errors="replace"))
        return total

    def heal_all(self) -> None:
        """Undo every fault still active, newest first (teardown calls this on failure too)."""
        errors = []
        for fault in reversed(self.faults):
            try:
                fault.heal()
            except Exception as exc:  # heal the rest; report the first failure after
                errors.append(exc)
        if errors:
            raise errors[0]
