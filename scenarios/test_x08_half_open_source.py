"""X08 Half-open source: one of two sources is cut off silently mid-download.

A pulled cable or a dead switch port: no RST, no FIN, packets just stop (iptables DROP both
ways, existing connections included). The download must finish from the other source with an
exact copy; a chunk stuck on the cut source is given up once no byte came for the chunk idle
timeout (5 s) and re-planned (or taken by the end game, should the survivor run out of work
first); both sides declare each other lost within the stale timeout; and
after the heal they meet again by themselves (the redial, no `connect`), and the healed source
serves the next download.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.runlog import Figure

RATE = ("--max-upload-rate", str(12 * 1024 * 1024))  # a 32 MiB chunk takes about 2.7 s
STALE = 8.0  # the peer's default --stale-timeout
LIVENESS_SLACK = 3.0  # the liveness rule runs every ping interval / 2, plus scheduling
REDIAL_BOUND = 5.0 + 5.0 + 3.0  # README: the redial ceiling, one connect timeout, slack


@pytest.mark.scenario("X08")
@pytest.mark.requires_docker("a silent cut needs network namespaces (iptables)")
def test_x08_half_open_source(lab: Lab, figure: Figure) -> None:
    cut, survivor = (lab.peer(n, fixture="fixture-alpha", args=RATE) for n in ("cut", "survivor"))
    client = lab.peer("client")
    client.connect(cut, survivor)

    start = client.begin_download("alienswarm", cut, survivor)
    fault = lab.nemesis.partition([client], [cut])
    at_cut, cut_side = client.mark(), cut.mark()
    client.expect("download-finished", where={"game_id": "alienswarm"}, since=start, timeout=120)
    end = client.mark()
    client.no_event_since("download-failed", since=start, until=end)
    assert_same(client.manifest("alienswarm"), survivor.manifest("alienswarm"), "alienswarm")

    # The fault bit: chunks were in flight on the cut source, and each came from the other
    # instead: given up after the idle timeout and re-planned, or (when the survivor ran out of
    # work first) duplicated on it by the end game and won there.
    failed = client.events("download-chunk-failed", since=at_cut, until=end)
    assert {f["peer_addr"] for f in failed} <= {cut.addr}, failed
    taken = client.events("download-chunk-duplicated", since=at_cut, until=end,
                          where={"holder_addr": cut.addr})  # fmt: skip
    stuck = {(e["path"], e["offset"]) for e in [*failed, *taken]}
    assert stuck, "no chunk was in flight on the cut source: the cut did not bite"
    after = client.events("download-chunk-finished", since=at_cut, until=end)
    assert stuck <= {(c["path"], c["offset"]) for c in after if c["peer_addr"] == survivor.addr}
    first = min([*failed, *taken], key=lambda e: e["_t"])
    figure("chunk_given_up_after_s", round(first["_t"] - fault.started, 1))

    # Both ends of the cut declare the other lost, by the liveness rule.
    lost = client.expect("peer-lost", where={"peer_id": cut.peer_id}, since=at_cut,
                         timeout=STALE + LIVENESS_SLACK)  # fmt: skip
    assert lost["reason"] == "timeout"
    lost_back = cut.expect("peer-lost", where={"peer_id": client.peer_id}, since=cut_side,
                           timeout=STALE + LIVENESS_SLACK)  # fmt: skip
    assert lost_back["reason"] == "timeout"
    figure("lost_after_s", round(lost["_t"] - fault.started, 1))
    survivor.no_event_since("peer-lost")  # the survivor's links were never cut

    healed = client.mark()  # before the heal: the two may meet before its last rule is gone
    fault.heal()
    commands_before = len(client.actions) + len(cut.actions)
    met = client.expect("peer-connected", where={"peer_id": cut.peer_id}, since=healed,
                        timeout=REDIAL_BOUND)  # fmt: skip
    assert fault.healing is not None
    figure("met_again_after_heal_s", round(met["_t"] - fault.healing, 1))
    assert len(client.actions) + len(cut.actions) == commands_before, "no connect, no restart"

    client.forget("alienswarm")
    again = client.download("alienswarm")
    assert again.outcome == "download-finished", again.terminal
    delivered = client.delivered(again)
    assert delivered.get(cut.addr, 0) > 0, f"the healed source served nothing: {delivered}"
    assert_same(client.manifest("alienswarm"), cut.manifest("alienswarm"), "alienswarm")
