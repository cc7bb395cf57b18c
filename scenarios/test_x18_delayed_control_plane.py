"""X18 Delayed control plane: delay, jitter and loss on the UDP link that carries QUIC.

This kernel has no netem, so the lab shapes UDP with a relay of its own (harness/shaper.py).
First the shaper itself is measured: 3000 round trips from the client's container through a
relay asked for 30 ms each way, 10 ms jitter and 20 % loss, to an echo, against 3000 through an
unshaped relay on the same path (what the path and the relay's own scheduling cost); the delay,
jitter and loss the shaper added must each be within 10 % of what was asked. Then the client
reaches a source
only through a relay adding 100 ms (jitter 30 ms, loss 5 %) each way: it connects, sees the
source's games, downloads one exact (chunks go over the direct fast lane), and nobody is
declared lost over three stale timeouts of a slow, lossy control plane.
"""

import json
from typing import Any

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.runlog import Figure
from harness.shaper import ECHO, PROBE, shape_of

PING, STALE = 1.0, 3.0
TIMING = ("--ping-interval", str(PING), "--stale-timeout", str(STALE))
ASKED = {"delay_ms": 30.0, "jitter_ms": 10.0, "loss_percent": 20.0}


def echo(lab: Lab) -> str:
    """A UDP echo on the scenario's network, ready: its HOST:PORT."""
    helper: Any = getattr(lab.backend, "helper")  # noqa: B009 (the Docker backend's)
    container, ip = helper("echo", ECHO, ["9999"])
    assert any(b"echoing" in line for line in container.logs(stream=True, follow=True))
    return f"{ip}:9999"


@pytest.mark.scenario("X18")
@pytest.mark.requires_docker("the shaper's relay runs in a container of its own")
def test_x18_delayed_control_plane(lab: Lab, figure: Figure) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=TIMING)
    client = lab.peer("client", args=TIMING)

    to = echo(lab)

    def probe(relay: str) -> dict[str, Any]:
        host, port = relay.split(":")
        rc, out = client.run("python3", "-c", PROBE, host, port, "3000", "0.002")
        assert rc == 0, out[-500:]
        return dict(json.loads(out))

    plain = lab.nemesis.delay(to, 0.0)  # the same path unshaped: what the path itself costs
    baseline = probe(plain.targets["relay"])
    plain.heal()
    shaped = lab.nemesis.delay(to, ASKED["delay_ms"], ASKED["jitter_ms"], ASKED["loss_percent"])
    measured = probe(shaped.targets["relay"])
    shaped.heal()
    shape = shape_of(measured["sent"], measured["rtts_ms"], baseline["rtts_ms"])
    figure("path_rtt_ms", round(sum(baseline["rtts_ms"]) / len(baseline["rtts_ms"]), 2))
    for name, asked in ASKED.items():
        got = getattr(shape, name)
        figure(f"shaper_{name}", round(got, 2))
        assert abs(got - asked) <= 0.1 * asked, f"{name}: asked {asked}, got {got:.2f}"

    link = lab.nemesis.delay(source.addr, delay_ms=100, jitter_ms=30, loss_percent=5)
    met = client.send("connect", addr=link.targets["relay"], timeout=60)
    assert met["peer_id"] == source.peer_id
    rows = client.list_games()
    assert rows["bf1942"]["peers"] == [source.peer_id], rows["bf1942"]
    w = client.download("bf1942")
    assert w.outcome == "download-finished", w.terminal
    assert_same(client.manifest("bf1942"), source.manifest("bf1942"), "bf1942")
    since = client.mark()
    client.stays_without("peer-lost", 3 * STALE)
    source.no_event_since("peer-lost")
    client.no_event_since("peer-lost", since=since)
    link.heal()
