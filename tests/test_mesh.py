"""The pure rules of the mesh: who an introduction is from, and whom liveness pings or drops."""

from __future__ import annotations

import pytest

from peer.mesh import (
    Changes,
    Liveness,
    PeerTable,
    RemotePeer,
    keeps_new_link,
    liveness,
    meeting,
)
from peer.protocol import PROTOCOL_VERSION, GameSummary, Hello, HelloAck, LibraryDelta

ME, OTHER = "a" * 32, "b" * 32


def hello(peer_id: str, token: str) -> Hello:
    return Hello(PROTOCOL_VERSION, peer_id, "h:1", 1, token, 0, ())


def known(token: str, last_seen: float = 0.0, peer_id: str = OTHER) -> RemotePeer:
    return RemotePeer(peer_id, "h:2", 2, token, 0, {}, last_seen)


@pytest.mark.parametrize(
    ("intro", "record", "expected"),
    [
        (hello(ME, "mine"), None, "self"),
        (hello(ME, "other"), None, "clone-of-self"),
        (hello(OTHER, "t1"), None, "new"),
        (hello(OTHER, "t1"), known("t1"), "same-process"),
        (hello(OTHER, "t2"), known("t1"), "restart-or-clone"),
    ],
    ids=["self", "clone-of-self", "new", "same-process", "restart-or-clone"],
)
def test_who_an_introduction_is_from(
    intro: Hello, record: RemotePeer | None, expected: str
) -> None:
    assert meeting(intro, ME, "mine", record) == expected


def test_liveness_pings_the_idle_and_drops_the_silent() -> None:
    peers = [
        known("t", last_seen=100.0, peer_id="0" * 32),  # idle 0: left alone
        known("t", last_seen=98.5, peer_id="1" * 32),  # idle 1.5: under the ping interval
        known("t", last_seen=98.0, peer_id="2" * 32),  # idle 2: exactly the interval, pinged
        known("t", last_seen=92.0, peer_id="3" * 32),  # idle 8: exactly stale, still pinged
        known("t", last_seen=91.9, peer_id="4" * 32),  # idle 8.1: dropped
    ]
    due = liveness(100.0, peers, ping_interval=2.0, stale_timeout=8.0)
    assert due == Liveness(ping=("2" * 32, "3" * 32), drop=("4" * 32,))
    assert liveness(100.0, [], 2.0, 8.0) == Liveness((), ())


def test_the_table_records_upserts_deltas_and_removals_by_peer_id() -> None:
    table = PeerTable()
    games = (summary("cnc4"), summary("bfbc2"))
    record, new = table.upsert(Hello(PROTOCOL_VERSION, OTHER, "h:1", 1, "t", 3, games), 5.0)
    assert new and (record.library_rev, record.last_seen) == (3, 5.0)
    assert record.to_json() == {
        "peer_id": OTHER,
        "addr": "h:1",
        "game_count": 2,
        "games": [summary("bfbc2").to_json(), summary("cnc4").to_json()],  # sorted by id
    }
    again, new = table.upsert(Hello(PROTOCOL_VERSION, OTHER, "h:9", 9, "t2", 4, ()), 6.0)
    assert not new and list(table.peers) == [OTHER] and again.addr == "h:9"
    delta = LibraryDelta(OTHER, 4, 5, added=(summary("ggoo"),))
    assert table.apply_delta(OTHER, delta) == "applied" and again.library_rev == 5
    assert list(again.library) == ["ggoo"]
    assert table.remove(OTHER) is again and table.remove(OTHER) is None
    assert table.apply_delta(OTHER, delta) == "moot"  # from a peer no longer known


def test_a_delta_applies_only_onto_the_revision_it_was_made_from() -> None:
    """A delta lost with a closed link must not leave the view wrong for good: the next one,
    from further on, is not applied onto the stale base (the caller asks the whole library)."""
    table = PeerTable()
    games = (summary("cnc4"), summary("ggoo"))
    record, _ = table.upsert(Hello(PROTOCOL_VERSION, OTHER, "h:1", 1, "t", 3, games), 5.0)
    lost = LibraryDelta(OTHER, 3, 4, removed=("ggoo",))  # never arrives
    assert lost.from_rev == record.library_rev
    beyond = LibraryDelta(OTHER, 4, 5, added=(summary("bfbc2"),))
    assert table.apply_delta(OTHER, beyond) == "behind"
    assert (record.library_rev, sorted(record.library)) == (3, ["cnc4", "ggoo"]), "untouched"
    late = LibraryDelta(OTHER, 2, 3, removed=("cnc4",))
    assert table.apply_delta(OTHER, late) == "moot"
    assert (record.library_rev, sorted(record.library)) == (3, ["cnc4", "ggoo"])


def test_a_newer_introduction_refreshes_the_library_and_says_what_changed() -> None:
    table = PeerTable()
    old = (summary("cnc4"), summary("ggoo"))
    record, _ = table.upsert(Hello(PROTOCOL_VERSION, OTHER, "h:1", 1, "t", 3, old), 5.0)
    changed = GameSummary("cnc4", "2", True, True, "Ready", 20)
    newer = HelloAck(PROTOCOL_VERSION, OTHER, "h:1", 1, "t", 5, (changed, summary("bfbc2")))
    assert table.refresh(newer) == Changes(added=["bfbc2"], updated=["cnc4"], removed=["ggoo"])
    assert (record.library_rev, sorted(record.library)) == (5, ["bfbc2", "cnc4"])
    assert table.refresh(newer) is None, "the same revision again changes nothing"
    older = HelloAck(PROTOCOL_VERSION, OTHER, "h:1", 1, "t", 4, old)
    assert table.refresh(older) is None and record.library_rev == 5, "never back to older"
    assert Changes.of_delta(LibraryDelta(OTHER, 5, 6, (summary("a1"),), (), ("b2",))) == Changes(
        ["a1"], [], ["b2"]
    )


def summary(game_id: str) -> GameSummary:
    return GameSummary(game_id, "1", True, False, "Ready", 10)


@pytest.mark.parametrize(("small", "large"), [("a" * 32, "b" * 32), ("0" * 31 + "1", "f" * 32)])
def test_both_ends_keep_the_same_one_of_two_live_links(small: str, large: str) -> None:
    """Link L1 dialled by one end, L2 by the other, seen in either order at either end: both
    ends keep the link the smaller peer id dialled."""
    for first_by_small in (True, False):  # which link each end saw first
        for end, other in ((small, large), (large, small)):
            old_ours = (end == small) == first_by_small
            keep_new = keeps_new_link(end, other, old_ours=old_ours, new_ours=not old_ours)
            kept_dialled_by_us = (not old_ours) if keep_new else old_ours
            kept_dialler = end if kept_dialled_by_us else other
            assert kept_dialler == small, (end, first_by_small)


def test_a_second_link_from_the_same_dialer_replaces_the_first() -> None:
    assert keeps_new_link("a" * 32, "b" * 32, old_ours=True, new_ours=True)
    assert keeps_new_link("a" * 32, "b" * 32, old_ours=False, new_ours=False)
