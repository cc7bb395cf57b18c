"""X13 Split room: five peers split 2 | 3; each side gains and loses a game while split.

During the split each side's `list-games` is right for its side alone. After the heal the
peers meet again by themselves (the redial) and every peer's view converges to the truth:
every change made on either side is seen everywhere and none is lost (Jepsen's set-full check,
over the sources of every game). The time each peer took to converge is a run-log figure.

The peers run with short liveness timings (ping 1 s, stale 3 s), so the split is noticed fast.
"""

import pytest

from harness.lab import Lab
from harness.peer import PeerHandle
from harness.runlog import Figure
from peer.catalog import load_catalog

TIMING = ("--ping-interval", "1", "--stale-timeout", "3")
NOTICED = 3.0 + 3.0  # stale timeout, plus the liveness rule's period and scheduling
MET_AGAIN = 5.0 + 5.0 + 5.0  # README: the redial ceiling, one connect timeout, slack


def drop_game(peer: PeerHandle, game_id: str) -> None:
    """Drop a new root of `game_id` (at the catalog's version) into `peer`'s games dir, as a
    person copying a game in would; the sentinel last, so it never looks complete before it is."""
    peer.write(f"{game_id}/{game_id}.eti", f"{game_id} dropped in by {peer.name}\n".encode())
    peer.write(f"{game_id}/version.ini", f"{load_catalog()[game_id]}\n".encode())


def sources(viewer: PeerHandle) -> dict[str, set[str]]:
    """Each game some peer serves, by the peer ids `viewer` sees serving it."""
    return {g: set(r["peers"]) for g, r in viewer.list_games().items() if r["peers"]}


def truth(
    libraries: dict[PeerHandle, set[str]], viewer: PeerHandle, visible: list[PeerHandle]
) -> dict[str, set[str]]:
    """What `viewer` should see: each game served by a peer it can reach, by their ids."""
    expected: dict[str, set[str]] = {}
    for peer in visible:
        if peer is not viewer:
            for game in libraries[peer]:
                expected.setdefault(game, set()).add(peer.peer_id)
    return expected


@pytest.mark.scenario("X13")
@pytest.mark.requires_docker("a partition needs network namespaces (iptables)")
def test_x13_split_room(lab: Lab, figure: Figure) -> None:
    a = lab.peer("a", fixture="fixture-mesh-a", args=TIMING)  # css alienswarm bf1942
    b = lab.peer("b", fixture="fixture-mesh-b", args=TIMING)  # css bfbc2 cnc4
    c = lab.peer("c", fixture="fixture-mesh-c", args=TIMING)  # cnctw cod5 ggoo
    d, e = lab.peer("d", args=TIMING), lab.peer("e", args=TIMING)
    everyone = [a, b, c, d, e]
    for i, peer in enumerate(everyone):
        peer.connect(*everyone[i + 1 :])
    libraries = {
        a: {"css", "alienswarm", "bf1942"},
        b: {"css", "bfbc2", "cnc4"},
        c: {"cnctw", "cod5", "ggoo"},
        d: set(),
        e: set(),
    }
    for peer in everyone:
        assert sources(peer) == truth(libraries, peer, everyone), peer.name

    left, right = [a, b], [c, d, e]
    since = {p.name: p.mark() for p in everyone}
    fault = lab.nemesis.partition(left, right)
    for side, other in ((left, right), (right, left)):
        for peer in side:
            for gone in other:
                peer.expect("peer-lost", where={"peer_id": gone.peer_id},
                            since=since[peer.name], timeout=NOTICED)  # fmt: skip

    # While split, each side changes: left gains ggoo (which c on the right has too) and loses
    # bfbc2; right gains bf1942 (which a on the left has too) and loses cod5.
    changes = {p.name: p.mark() for p in everyone}
    drop_game(a, "ggoo")
    b.remove("bfbc2")
    drop_game(d, "bf1942")
    c.remove("cod5")
    libraries[a].add("ggoo")
    libraries[b].discard("bfbc2")
    libraries[d].add("bf1942")
    libraries[c].discard("cod5")
    for side in (left, right):
        for peer in side:
            for changed in side:
                if changed is not peer and changed in (a, b, c, d):
                    peer.expect("peer-library-changed", where={"peer_id": changed.peer_id},
                                since=changes[peer.name])  # fmt: skip
            assert sources(peer) == truth(libraries, peer, side), f"{peer.name} while split"

    healed = {p.name: p.mark() for p in everyone}  # before: sides may meet mid-heal
    fault.heal()
    assert fault.healing is not None
    for side, other in ((left, right), (right, left)):
        for peer in side:
            last = 0.0
            for back in other:
                met = peer.expect("peer-connected", where={"peer_id": back.peer_id},
                                  since=healed[peer.name], timeout=MET_AGAIN)  # fmt: skip
                last = max(last, met["_t"])
            figure(f"{peer.name}_converged_after_s", round(last - fault.healing, 1))
    for peer in everyone:  # set-full: every change everywhere, none lost, nothing extra
        assert sources(peer) == truth(libraries, peer, everyone), f"{peer.name} after the heal"
        assert len(peer.list_peers()) == 4
