"""The pure download planner: plurality validation, least-loaded split, retries, stealing."""

from __future__ import annotations

from collections import deque

import pytest

from peer.errors import PeerError
from peer.protocol import FileDescriptor
from peer.transfer.plan import (
    Chunk,
    Scheduler,
    assign_least_loaded,
    chunks_of,
    validate_descriptors,
)

H = "0" * 64


def desc(path: str, size: int, chunk: int = 10, tag: str = "0") -> FileDescriptor:
    n = max(1, -(-size // chunk))
    return FileDescriptor(path, size, chunk, tuple((tag * 64)[:64] for _ in range(n)))


GOOD = (desc("a.eti", 40), desc("version.ini", 9))
BAD = (desc("a.eti", 41), desc("version.ini", 9))


def test_single_source_is_its_own_majority() -> None:
    v = validate_descriptors("g", {"p1": GOOD})
    assert v.files == GOOD and v.sources == ("p1",) and v.rejected == ()


def test_majority_wins_and_minority_is_rejected() -> None:
    v = validate_descriptors("g", {"p1": GOOD, "p2": BAD, "p3": GOOD})
    assert v.files == GOOD
    assert v.sources == ("p1", "p3")
    assert v.rejected == ("p2",)


def test_one_vs_one_conflict_rejects_the_download() -> None:
    with pytest.raises(PeerError) as err:
        validate_descriptors("g", {"p1": GOOD, "p2": BAD})
    assert err.value.code == "ambiguous-metadata"


def test_hash_disagreement_counts_as_conflict() -> None:
    liar = (desc("a.eti", 40, tag="f"), desc("version.ini", 9))
    with pytest.raises(PeerError):
        validate_descriptors("g", {"p1": GOOD, "p2": liar})
    assert validate_descriptors("g", {"p1": GOOD, "p2": liar, "p3": GOOD}).rejected == ("p2",)


def test_no_offers_means_no_peers() -> None:
    with pytest.raises(PeerError) as err:
        validate_descriptors("g", {})
    assert err.value.code == "no-peers"


def test_chunks_cover_every_byte_once() -> None:
    chunks = chunks_of((desc("a", 35), desc("b", 0), desc("c", 10)))
    assert [(c.path, c.offset, c.length) for c in chunks] == [
        ("a", 0, 10),
        ("a", 10, 10),
        ("a", 20, 10),
        ("a", 30, 5),
        ("b", 0, 0),
        ("c", 0, 10),
    ]


def test_four_chunks_split_two_and_two() -> None:
    chunks = chunks_of((desc("big", 35),))
    plan = assign_least_loaded(chunks, ("A", "B"))
    assert len(plan["A"]) == len(plan["B"]) == 2
    loads = [sum(c.length for c in plan[s]) for s in ("A", "B")]
    assert abs(loads[0] - loads[1]) <= 10


def test_every_source_gets_work_when_there_is_enough() -> None:
    chunks = chunks_of((desc("big", 100),))
    plan = assign_least_loaded(chunks, ("A", "B", "C"))
    assert all(plan[s] for s in "ABC")
    planned = [c for q in plan.values() for c in q]
    assert len(planned) == len(chunks) and set(planned) == set(chunks)


def test_failed_source_work_moves_to_survivor() -> None:
    chunks = chunks_of((desc("big", 40),))
    s = Scheduler.plan(chunks, ("A", "B"))
    a1 = s.next_for("A")
    b1 = s.next_for("B")
    assert a1 and b1 and a1 != b1
    s.failed(b1, "B")
    assert s.next_for("B") is None, "a failed source is not asked again"
    got = []
    s.succeeded(a1)
    while (c := s.next_for("A")) is not None:
        got.append(c)
        s.succeeded(c)
    assert s.finished
    assert b1 in got
    assert max(s.attempts.values()) <= 2


def test_idle_source_does_not_steal_from_a_source_with_free_capacity() -> None:
    chunks = chunks_of((desc("big", 20), desc("small", 5)))
    s = Scheduler.plan(chunks, ("A", "B"), depth=2)
    assert s.next_for("A") is not None and s.next_for("A") is not None
    assert s.next_for("A") is None, "B has not started yet: its chunk waits for B"
    assert s.next_for("B") is not None


def test_idle_source_steals_queued_not_in_flight_chunks() -> None:
    chunks = chunks_of((desc("big", 60),))
    s = Scheduler.plan(chunks, ("A", "B"))
    planned_for_b = list(s.queues["B"])
    in_flight_b = s.next_for("B")
    fetched_by_a = []
    while (c := s.next_for("A")) is not None:
        fetched_by_a.append(c)
        s.succeeded(c)
    assert in_flight_b is not None and in_flight_b not in s.done
    stolen = [c for c in fetched_by_a if c in planned_for_b]
    assert stolen == planned_for_b[:0:-1], "A takes B's queued chunks, newest first"
    assert len(fetched_by_a) == len(chunks) - 1, "everything but B's chunk in flight"
    assert in_flight_b in s.in_flight, "a chunk in flight is never handed out twice"
    assert not s.queues["B"]
    assert all(v == 1 for v in s.attempts.values())
    s.succeeded(in_flight_b)
    assert s.finished


def test_all_sources_dead_is_stranded() -> None:
    chunks = [Chunk("a", 0, 1, H)]
    s = Scheduler.plan(chunks, ("A",))
    c = s.next_for("A")
    assert c is not None
    s.failed(c, "A")
    assert s.stranded and not s.finished


def test_refusals_name_the_game_and_the_vote() -> None:
    with pytest.raises(PeerError) as none:
        validate_descriptors("g", {})
    assert none.value.message == "no peers have game g"
    with pytest.raises(PeerError) as tie:
        validate_descriptors("g", {"p1": GOOD, "p2": BAD})
    assert tie.value.message == (
        "sources disagree on the files of g and no version has a majority "
        "(2 variants, 1 vote(s) each at the top)"
    )


def test_an_agreed_empty_offer_is_bad_metadata() -> None:
    with pytest.raises(PeerError) as err:
        validate_descriptors("g", {"p1": (), "p2": ()})
    assert (err.value.code, err.value.message) == ("bad-metadata", "sources offer no files for g")


def test_the_largest_chunks_are_placed_first() -> None:
    """A short chunk listed first must not push a full one onto the busier source."""
    tail, big1, big2 = Chunk("a", 0, 1, H), Chunk("b", 0, 10, H), Chunk("c", 0, 10, H)
    plan = assign_least_loaded([tail, big1, big2], ("A", "B"))
    assert plan == {"A": [tail, big1], "B": [big2]}


def test_a_source_with_free_lanes_keeps_its_queue_at_depth_two() -> None:
    chunks = chunks_of((desc("big", 40),))
    s = Scheduler.plan(chunks, ("A", "B"), depth=2)
    s.queues["B"].extend(s.queues["A"])
    s.queues["A"].clear()
    assert s.next_for("B") is not None, "B: one chunk in flight, a lane still free"
    assert s.next_for("A") is None, "so A must not take B's queued chunks"
    assert s.next_for("B") is not None
    assert s.next_for("A") is not None, "now B is busy on both lanes: A may take one"


def test_a_source_that_finished_its_chunk_is_no_longer_busy() -> None:
    chunks = chunks_of((desc("big", 30),))
    s = Scheduler.plan(chunks, ("A", "B"))
    s.queues["A"].extend(s.queues["B"])
    s.queues["B"].clear()
    first = s.next_for("A")
    assert first is not None
    s.succeeded(first)
    assert s.next_for("B") is None, "A is idle between chunks, not busy: its queue stays"


def test_an_idle_source_steals_from_the_longest_waiting_queue() -> None:
    def one(path: str, length: int) -> Chunk:
        return Chunk(path, 0, length, H)

    s = Scheduler(
        queues={
            "a": deque([one("a1", 10), one("a2", 10)]),
            "b": deque([one("b1", 10), one("b2", 10), one("b3", 10), one("b4", 10)]),
            "c": deque([one("c1", 10), one("c2", 10)]),
            "d": deque(),
        },
        total=8,
    )
    for busy in "abc":
        assert s.next_for(busy) is not None
    assert s.next_for("d") == one("b4", 10)
