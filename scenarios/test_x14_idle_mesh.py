"""X14 Idle mesh: connected peers that say nothing for three stale timeouts keep each other
(keep-alive pings are sent and answered); then a silent cut, and each declares the other lost
within the stale timeout.

The peers run with short liveness timings (ping every 1 s, stale after 3 s) so three stale
timeouts fit in nine seconds; the rule is the same at the defaults (2 s and 8 s).
"""

import pytest

from harness.lab import Lab
from harness.runlog import Figure

PING, STALE = 1.0, 3.0
TIMING = ("--ping-interval", str(PING), "--stale-timeout", str(STALE))
SLACK = PING / 2 + 2.0  # the liveness rule runs every ping interval / 2, plus scheduling


@pytest.mark.scenario("X14")
@pytest.mark.requires_docker("a silent cut needs network namespaces (iptables)")
def test_x14_idle_mesh(lab: Lab, figure: Figure) -> None:
    a, b, c = (lab.peer(n, args=TIMING) for n in ("a", "b", "c"))
    a.connect(b, c)
    b.connect(c)
    for peer in (a, b, c):
        assert len(peer.list_peers()) == 2

    a.stays_without("peer-lost", 3 * STALE)  # idle: only pings cross the links
    for peer in (b, c):
        peer.no_event_since("peer-lost")
    for peer in (a, b, c):
        assert len(peer.list_peers()) == 2, "an idle mesh keeps every peer"

    since = {p.name: p.mark() for p in (a, b, c)}
    fault = lab.nemesis.partition([a], [b, c])
    for peer, other in ((a, b), (a, c), (b, a), (c, a)):
        lost = peer.expect("peer-lost", where={"peer_id": other.peer_id}, since=since[peer.name],
                           timeout=STALE + SLACK)  # fmt: skip
        assert lost["reason"] == "timeout"
        figure(f"{peer.name}_lost_{other.name}_after_s", round(lost["_t"] - fault.started, 1))
    b.no_event_since("peer-lost", since=since["b"], where={"peer_id": c.peer_id})
    c.no_event_since("peer-lost", since=since["c"], where={"peer_id": b.peer_id})
