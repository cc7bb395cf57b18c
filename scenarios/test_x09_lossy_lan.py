"""X09 Lossy LAN: 5 % of packets lost on every link, during a two-source download and during a
streamed install. Both finish exact and no peer is declared lost; the download's MiB/s under
loss and clean, measured in this scenario, are run-log figures.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.runlog import Figure

LOSS = 5.0


@pytest.mark.scenario("X09")
@pytest.mark.requires_docker("packet loss needs network namespaces (iptables statistic)")
def test_x09_lossy_lan(lab: Lab, figure: Figure) -> None:
    one, two = (lab.peer(n, fixture="fixture-alpha") for n in ("source-1", "source-2"))
    streamer = lab.peer("streamer", fixture="fixture-bravo", args=("--unrar", lab.backend.unrar))
    client = lab.peer("client")
    everyone = [one, two, streamer, client]
    client.connect(one, two, streamer)

    clean = client.download("alienswarm")
    assert clean.outcome == "download-finished", clean.terminal
    client.forget("alienswarm")

    since = {p.name: p.mark() for p in everyone}
    fault = lab.nemesis.loss(everyone, LOSS, everyone=everyone)
    lossy = client.download("alienswarm", timeout=300)
    assert lossy.outcome == "download-finished", lossy.terminal
    delivered = client.delivered(lossy)
    assert set(delivered) == {one.addr, two.addr}, delivered
    assert_same(client.manifest("alienswarm"), one.manifest("alienswarm"), "alienswarm")

    expected = streamer.rar_members(lab.backend.unrar, "cnctw/cnctw.eti")
    stream = client.stream_install("cnctw", timeout=300)
    assert stream.outcome == "install-finished", stream.terminal
    client.assert_stream_installed("cnctw", expected)
    lost_packets = lab.nemesis.dropped(fault)
    fault.heal()
    assert lost_packets > 0, "the fault bit: packets were dropped"
    figure("packets_dropped", lost_packets)

    for peer in everyone:  # loss is not a cut: nobody was declared lost, nothing failed
        peer.no_event_since("peer-lost", since=since[peer.name])
    client.no_event_since("download-source-excluded", since=since["client"])
    figure("clean_mib_per_s", clean.terminal["mib_per_s"])
    figure("lossy_mib_per_s", lossy.terminal["mib_per_s"])
    figure("loss_percent", LOSS)
