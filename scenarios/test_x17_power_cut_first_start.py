"""X17 (beyond upstream) A power cut right after first start: the identity (TLS key, certificate
and `identity.json`) is absent and made again, or whole; never half, never a key that keeps the
peer from starting. Once the peer said it was ready, its identity survives any cut.

A fresh peer on powerfs for each sync of the first start, the cut armed at that sync (1st, 2nd,
3rd ... until a start runs through): it reboots, must start, and its state dir must hold one
consistent identity; then a cut right after that start must keep the same peer id.
"""

import json

import pytest

from harness.lab import Lab
from harness.peer import PeerHandle
from harness.waiting import Record

MAX_SYNCS = 20  # far above a first start's syncs (a key, a certificate, identity.json)


def identity_on_disk(peer: PeerHandle) -> str:
    """The peer id `identity.json` records, with the key and certificate beside it."""
    for name in ("tls-key.pem", "tls-cert.pem"):
        rc, _ = peer.run("test", "-s", peer.process.state_path(name))
        assert rc == 0, f"{name} is missing or empty on {peer.name}"
    rc, out = peer.run("cat", peer.process.state_path("identity.json"))
    assert rc == 0, out
    return str(json.loads(out)["peer_id"])


@pytest.mark.scenario("X17")
def test_x17_power_cut_right_after_first_start(lab: Lab) -> None:
    cuts: list[Record] = []
    for syncs in range(1, MAX_SYNCS):
        peer = lab.create(f"fresh-{syncs}", power=True)
        end = peer.start_into_power_cut(syncs)
        if end.get("event") == "local-peer-ready":
            assert identity_on_disk(peer) == peer.peer_id
            break  # the first start needs fewer syncs: every one of them was cut
        cuts.append(end)

        peer.restart()  # the reboot: a half identity would refuse to start here
        assert identity_on_disk(peer) == peer.peer_id, "identity.json names another key"
        ready_id = peer.peer_id
        peer.power_cut()  # right after a start that said it was ready
        peer.restart()
        assert peer.peer_id == ready_id, "the identity of a ready peer did not survive a cut"
    else:
        pytest.fail(f"the first start never ran through in {MAX_SYNCS} cuts")

    where = {(str(c["op"]), str(c["path"]).rsplit("/", 1)[-1]) for c in cuts}
    for point in ("tls-key.pem.tmp", "tls-cert.pem.tmp", "identity.json.tmp", "state"):
        assert any(path == point for _, path in where), f"no cut at {point}: {where}"
