"""X05 Identity bound to a key (beyond upstream, whose peer id any host may claim).

A host that introduces itself with another peer's id is refused, because the id is the
fingerprint of the TLS key each end proves in the QUIC handshake: the victim's entry stays as
it was. A second peer started from a copy of a peer's state dir holds the same key, so the
same id: every peer that meets both, and both copies, report `duplicate-identity`, and the
first is kept, never merged with the second. (S11 proves a restart still updates one entry.)
"""

from typing import Any

import pytest

from harness.lab import Lab
from harness.peer import PeerHandle


def entries(peer: PeerHandle) -> list[tuple[str, str, int]]:
    return [(p["peer_id"], p["addr"], p["game_count"]) for p in peer.list_peers()]


def reported(peer: PeerHandle, since: int, peer_id: str, **where: Any) -> dict[str, Any]:
    return peer.expect("duplicate-identity", where={"peer_id": peer_id, **where}, since=since)


@pytest.mark.scenario("X05")
def test_x05_identity_bound_to_key(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    mallory = lab.peer("mallory")
    alpha.connect(bravo)
    before = entries(alpha)
    assert before == [(bravo.peer_id, bravo.addr, 4)]

    # A spoofed id: mallory claims bravo's id, without bravo's key.
    start = alpha.mark()
    answer = mallory.probe(alpha, claim=bravo.peer_id)
    assert answer.get("error", {}).get("code") == "identity-mismatch", answer
    refusal = alpha.expect("peer-refused", where={"peer_id": bravo.peer_id}, since=start)
    assert refusal["code"] == "identity-mismatch" and "holds the key of" in refusal["reason"]
    assert entries(alpha) == before, "the victim's entry is untouched"
    alpha.no_event_since("peer-connected", since=start)
    alpha.no_event_since("peer-lost", since=start)
    assert alpha.list_games()["cnctw"]["peer_count"] == 1, "bravo still serves through alpha"

    # A cloned state dir: charlie starts from a copy of bravo's.
    charlie = lab.peer("charlie")
    charlie.take_identity_of(bravo)
    assert charlie.peer_id == bravo.peer_id and charlie.addr != bravo.addr
    marks = {p.name: p.mark() for p in (alpha, bravo, charlie)}
    refused = alpha.send_error("connect", addr=charlie.addr)
    assert refused["code"] == "duplicate-identity", refused
    pair = [bravo.addr, charlie.addr]
    for peer in (alpha, bravo, charlie):
        event = reported(peer, marks[peer.name], bravo.peer_id)
        assert (event["addrs"], event["reported_by"]) == (pair, alpha.peer_id), (peer.name, event)
    assert entries(alpha) == before, "the first is kept; nothing merged"
    alpha.no_event_since("peer-connected", since=marks["alpha"])
    bravo.no_event_since("peer-lost", since=marks["bravo"])
    # charlie had recorded alpha's Hello before alpha saw the clash; alpha's close drops it.
    charlie.expect("peer-lost", where={"peer_id": alpha.peer_id}, since=marks["charlie"])
    assert entries(charlie) == []

    # The copy meets the original: both report it, neither records the other.
    marks = {p.name: p.mark() for p in (bravo, charlie)}
    refused = charlie.send_error("connect", addr=bravo.addr)
    assert refused["code"] == "duplicate-identity", refused
    for peer in (bravo, charlie):
        event = reported(peer, marks[peer.name], bravo.peer_id, reported_by=bravo.peer_id)
        assert event["addrs"] == pair, (peer.name, event)
    assert [e[0] for e in entries(bravo)] == [alpha.peer_id]
    assert entries(charlie) == []
