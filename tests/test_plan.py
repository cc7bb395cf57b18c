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


# -- learned rates and the end game ----------------------------------------------------------------


def one(path: str, length: int = 10) -> Chunk:
    return Chunk(path, 0, length, H)


def rated(s: Scheduler, source: str, bytes_per_s: float, seconds: float = 1.0) -> None:
    """Feed `source` a rate: a chunk in flight that received `bytes_per_s * seconds` bytes."""
    probe = Chunk(f"probe-{source}", 0, 10**12, H)
    s.observe(source, seconds, {probe: int(bytes_per_s * seconds)})


def test_a_rate_counts_only_after_the_window() -> None:
    s = Scheduler(queues={"A": deque()}, total=0, window=0.5)
    c = one("x", 100)
    s.observe("A", 0.25, {c: 40})
    assert s.rate("A") is None, "a quarter second says nothing yet"
    s.observe("A", 0.25, {c: 50})
    assert s.rate("A") == 100.0, "50 bytes in half a second; totals, not increments"
    s.succeeded(c)
    s.observe("A", 0.5, {c: 100})  # a late report of a chunk already done counts no bytes
    assert s.rate("A") == 50.0


def test_a_known_slow_source_is_not_handed_its_own_big_chunk() -> None:
    big = [one(f"c{i}", 100) for i in range(3)]
    s = Scheduler(queues={"fast": deque(), "slow": deque(big)}, total=3)
    rated(s, "fast", 100.0)
    rated(s, "slow", 2.0)
    assert s.next_for("slow") is None, "50 s here, 1-3 s on the fast source"
    assert list(s.queues["fast"]) == big and not s.queues["slow"], "the work moved, in order"
    assert s.next_for("fast") == big[0]


def test_a_slow_source_keeps_a_chunk_it_finishes_about_as_soon() -> None:
    s = Scheduler(queues={"A": deque([one("a", 100)]), "B": deque()}, total=1)
    rated(s, "A", 60.0)
    rated(s, "B", 100.0)
    assert s.next_for("A") == one("a", 100), "1.7 s against 1 s: within the margin of 2"


def test_unknown_rates_keep_the_plan() -> None:
    s = Scheduler(queues={"A": deque([one("a", 100)]), "B": deque()}, total=1)
    rated(s, "B", 100.0)
    assert s.next_for("A") == one("a", 100), "A's rate is unknown: it keeps its work"


def test_a_known_slow_source_leaves_a_retried_chunk_to_a_faster_one() -> None:
    s = Scheduler(queues={"fast": deque(), "slow": deque()}, total=1)
    s.retry.append(one("r", 100))
    rated(s, "fast", 100.0)
    rated(s, "slow", 1.0)
    assert s.next_for("slow") is None
    assert s.next_for("fast") == one("r", 100)


def test_a_slow_idle_source_does_not_steal_from_a_fast_busy_one() -> None:
    s = Scheduler(queues={"fast": deque([one("f1"), one("f2")]), "slow": deque()}, total=2)
    assert s.next_for("fast") == one("f1")
    rated(s, "fast", 100.0)
    rated(s, "slow", 1.0)
    assert s.next_for("slow") is None, "10 s on the slow one; the fast one is done in 0.2 s"
    assert list(s.queues["fast"]) == [one("f2")]


def test_a_fast_idle_source_steals_from_a_slow_one_with_a_free_lane() -> None:
    s = Scheduler(queues={"fast": deque(), "slow": deque([one("s1"), one("s2")])}, total=2)
    s.depth = 2
    assert s.next_for("slow") == one("s1")  # one lane busy, one free: not `busy`
    rated(s, "fast", 100.0)
    rated(s, "slow", 1.0)
    assert s.next_for("fast") == one("s2"), "the slow source would take 20 s to get to it"


def test_a_fast_source_steals_from_the_queue_that_waits_longest_in_seconds() -> None:
    s = Scheduler(
        queues={
            "big": deque([one("b1"), one("b2"), one("b3"), one("b4")]),  # 40 bytes at 100/s
            "slow": deque([one("s1"), one("s2")]),  # 20 bytes at 2/s
            "idle": deque(),
        },
        total=6,
    )
    assert s.next_for("big") == one("b1") and s.next_for("slow") == one("s1")
    rated(s, "big", 100.0)
    rated(s, "slow", 2.0)
    rated(s, "idle", 100.0)
    assert s.next_for("idle") == one("s2"), "10 s of queue beats 0.3 s, though fewer bytes"


def endgame_two(holder_rate: float | None = 1.0) -> tuple[Scheduler, Chunk, Chunk]:
    """A and B each with one chunk in flight, nothing queued anywhere; B's rate known."""
    a, b = one("a"), one("b")
    s = Scheduler(queues={"A": deque([a]), "B": deque([b])}, total=2)
    assert s.next_for("A") == a and s.next_for("B") == b
    if holder_rate is not None:
        rated(s, "B", holder_rate)
    return s, a, b


def test_an_idle_source_duplicates_a_chunk_in_flight_elsewhere() -> None:
    s, a, b = endgame_two(holder_rate=None)
    s.succeeded(a)
    assert s.next_for("A") is None, "nothing queued, nothing to steal"
    assert s.endgame_for("A") is None, "B has just begun: it may be about to finish"
    rated(s, "B", 1.0)
    assert s.endgame_for("A") == b, "known now, and A's rate unknown counts as sooner"
    assert s.duplicates == {b: "A"} and s.holder(b) == "B"
    assert s.busy("A"), "the duplicate holds A's lane"
    assert s.attempts[b] == 2
    s.succeeded(b)
    assert s.finished and not s.duplicates and not s.in_flight


def test_at_most_one_duplicate_per_chunk() -> None:
    b = one("b")
    s = Scheduler(queues={"A": deque(), "B": deque([b]), "C": deque()}, total=1)
    assert s.next_for("B") == b
    rated(s, "B", 0.0)  # a stalled holder
    assert s.endgame_for("A") == b
    assert s.endgame_for("C") is None, "b has its duplicate already"
    assert s.endgame_for("B") is None, "never a duplicate of one's own chunk"


def test_no_end_game_while_work_is_queued_or_retried() -> None:
    s, a, b = endgame_two()
    s.queues["B"].append(one("b2"))
    assert s.endgame_for("A") is None, "B's queued chunk is work to steal, not to duplicate"
    s.queues["B"].clear()
    s.retry.append(one("r"))
    assert s.endgame_for("A") is None, "a retry is work too"
    s.retry.clear()
    assert s.endgame_for("A") is None, "A's own lane is still busy with a"
    s.succeeded(a)
    assert s.endgame_for("A") == b


def test_a_dead_source_gets_no_duplicate() -> None:
    s, a, _b = endgame_two()
    s.failed(a, "A")
    s.retry.clear()
    assert s.endgame_for("A") is None


def test_no_duplicate_when_the_holder_is_known_to_finish_first() -> None:
    s, a, b = endgame_two()
    s.succeeded(a)
    rated(s, "A", 10.0)
    rated(s, "B", 10.0)
    s.observe("B", 0.0, {b: 9})  # one byte left on B: 0.1 s; the whole chunk on A: 1 s
    assert s.endgame_for("A") is None
    s.observe("B", 0.0, {b: 9})
    rated(s, "B", 0.0, seconds=100.0)  # B stalls: its rate falls below a byte a second
    assert s.endgame_for("A") == b


def test_the_slowest_holder_is_raced_first() -> None:
    b, c = one("b"), one("c")
    s = Scheduler(queues={"A": deque(), "B": deque([b]), "C": deque([c])}, total=2)
    assert s.next_for("B") == b and s.next_for("C") == c
    rated(s, "A", 100.0)
    rated(s, "B", 5.0)
    rated(s, "C", 1.0)
    assert s.endgame_for("A") == c


def test_a_failed_duplicate_leaves_the_chunk_with_its_holder() -> None:
    s, a, b = endgame_two()
    s.succeeded(a)
    assert s.endgame_for("A") == b
    s.failed(b, "A")
    assert "A" in s.dead and s.in_flight == {b: "B"} and not s.duplicates
    assert not s.retry, "b is still in flight on B: not retried"
    s.succeeded(b)
    assert s.finished


def test_a_failed_holder_leaves_the_chunk_with_its_duplicate() -> None:
    s, a, b = endgame_two()
    s.succeeded(a)
    assert s.endgame_for("A") == b
    s.failed(b, "B")
    assert s.in_flight == {b: "A"} and not s.duplicates and not s.retry
    assert s.next_for("A") is None and s.endgame_for("A") is None
    s.succeeded(b)
    assert s.finished and not s.stranded


# -- the arithmetic behind the rates, at its edges --------------------------------------------


def test_load_is_what_is_queued_and_what_each_copy_in_flight_still_lacks() -> None:
    a1, d, b1, q = one("a1"), one("d"), one("b1"), one("q")
    s = Scheduler(queues={"A": deque([a1, q]), "B": deque([b1])}, total=4)
    assert s.next_for("A") == a1 and s.next_for("B") == b1
    s.duplicates[d] = "A"
    s.duplicates[one("e")] = "B"  # B's duplicate is B's load, not A's
    s.observe("A", 0.0, {a1: 4, d: 10})  # d wholly received: it lacks nothing, not 1 byte
    assert s.load("A") == 10 + 6 + 0, "q queued, 6 bytes of a1, nothing of d"
    assert s.load("B") == 20, "b1 and e received nothing yet: all of them"
    s.observe("A", 1.0, {})
    assert s.eta("A") == 16 / 14.0, "14 bytes received in 1 s busy"


def test_a_stalled_source_never_finishes_and_a_trickle_does() -> None:
    s = Scheduler(queues={"A": deque([one("a")]), "B": deque([one("b")])}, total=2)
    s.observe("A", 1.0, {})
    assert s.rate("A") == 0.0 and s.eta("A") == float("inf")
    s.observe("B", 20.0, {one("x", 100): 10})  # half a byte a second: slow, not stalled
    assert s.eta("B") == 20.0


def test_a_report_of_a_finished_chunk_does_not_hide_the_others() -> None:
    done, live = one("done"), one("live", 100)
    s = Scheduler(queues={"A": deque()}, total=2)
    s.succeeded(done)
    s.observe("A", 1.0, {done: 10, live: 30})
    assert s.rate("A") == 30.0


def test_success_forgets_that_chunk_s_copies_only() -> None:
    a, b = one("a"), one("b")
    s = Scheduler(queues={"A": deque(), "B": deque()}, total=2)
    s.observe("A", 0.0, {a: 3})
    s.observe("B", 0.0, {a: 2, b: 5})
    s.succeeded(a)
    assert s.received == {(b, "B"): 5}


def test_exactly_twice_as_fast_is_not_enough_to_move_a_chunk() -> None:
    c = one("c", 100)
    s = Scheduler(queues={"A": deque([c]), "B": deque()}, total=1)
    rated(s, "A", 50.0)  # 2 s here
    rated(s, "B", 100.0)  # 1 s there: twice as soon, not more
    assert s.next_for("A") == c


def test_a_moved_chunk_goes_to_the_first_of_the_fastest_known_sources() -> None:
    c = one("c", 100)
    s = Scheduler(
        queues={"slow": deque([c]), "new": deque(), "F1": deque(), "F2": deque()}, total=1
    )
    rated(s, "slow", 1.0)
    rated(s, "F1", 100.0)
    rated(s, "F2", 100.0)
    assert s.next_for("slow") is None
    assert list(s.queues["F1"]) == [c], "'new' has no rate yet; F1 and F2 tie: the first"


def test_without_both_rates_stealing_needs_a_busy_donor() -> None:
    s = Scheduler(queues={"A": deque(), "B": deque([one("b1"), one("b2")])}, total=2, depth=2)
    assert s.next_for("B") == one("b1")
    rated(s, "A", 100.0)  # B's rate is unknown, and B has a lane free
    assert s.next_for("A") is None


def test_no_steal_when_it_would_finish_no_sooner() -> None:
    s = Scheduler(queues={"A": deque(), "B": deque([one("b1")])}, total=1, depth=2)
    rated(s, "A", 10.0)
    rated(s, "B", 10.0)
    assert s.next_for("A") is None, "1 s on A, 1 s on B: the same, so B keeps it"


def test_a_stalled_donor_waits_longest_and_a_trickling_one_by_its_seconds() -> None:
    s = Scheduler(
        queues={
            "stalled": deque([one("s0"), one("s1")]),
            "trickle": deque([one("t0"), one("t1")]),
            "steady": deque([one("q0"), one("q1"), one("q2"), one("q3")]),
            "idle": deque(),
        },
        total=8,
    )
    for busy in ("stalled", "trickle", "steady"):
        assert s.next_for(busy) is not None
    rated(s, "stalled", 0.0)
    rated(s, "trickle", 0.5, seconds=100.0)  # 10 queued bytes: 20 s
    rated(s, "steady", 1.25, seconds=100.0)  # 30 queued bytes: 24 s
    rated(s, "idle", 1000.0)
    assert s.next_for("idle") == one("s1"), "a stalled queue never drains"
    assert s.next_for("idle") == one("q3"), "24 s of queue before 20 s, at under 2 bytes/s"
    assert s.next_for("idle") == one("t1"), "20 s before 16 s"


def test_a_duplicate_holds_one_lane_not_two() -> None:
    s = Scheduler(queues={"A": deque(), "B": deque([one("b")])}, total=1, depth=2)
    assert s.next_for("B") == one("b")
    rated(s, "B", 1.0)
    assert s.endgame_for("A") == one("b")
    assert not s.busy("A"), "one of A's two lanes is still free"


def endgame_three(**holders: float | None) -> tuple[Scheduler, list[Chunk]]:
    """Idle A; each named holder with one chunk in flight, in order, and its rate if given."""
    chunks = [one(f"{h}-chunk") for h in holders]
    queues: dict[str, deque[Chunk]] = {"A": deque()}
    queues |= {h: deque([c]) for h, c in zip(holders, chunks, strict=True)}
    s = Scheduler(queues=queues, total=len(chunks))
    for holder, rate in holders.items():
        assert s.next_for(holder) is not None
        if rate is not None:
            rated(s, holder, rate)
    return s, chunks


def test_the_end_game_looks_past_a_chunk_it_may_not_race() -> None:
    s, (b, c) = endgame_three(B=1.0, C=1.0)
    s.duplicates[b] = "X"
    assert s.endgame_for("A") == c, "b has its duplicate: c is next"
    s, (b, c) = endgame_three(B=None, C=1.0)
    assert s.endgame_for("A") == c, "B's rate is unknown: c is next"
    s, (b, c) = endgame_three(B=100.0, C=1.0)
    rated(s, "A", 20.0)
    assert s.endgame_for("A") == c, "B finishes b in 0.1 s, before A could: c is next"


def test_holders_equally_slow_are_raced_in_order() -> None:
    s, (b, _c) = endgame_three(B=1.0, C=1.0)
    assert s.endgame_for("A") == b


def test_no_duplicate_when_the_holder_finishes_just_as_soon() -> None:
    s, (_b,) = endgame_three(B=10.0)
    rated(s, "A", 10.0)
    assert s.endgame_for("A") is None, "1 s either way: a duplicate would only cost bytes"


def test_a_holder_that_received_nothing_still_owes_the_whole_chunk() -> None:
    s, (b,) = endgame_three(B=10.0)  # b: 10 bytes at 10/s, 1 s
    rated(s, "A", 10.0 / 0.95, seconds=100.0)  # 0.95 s on A
    assert s.endgame_for("A") == b


def test_a_retried_chunk_counts_its_second_attempt() -> None:
    s = Scheduler(queues={"A": deque([one("a")]), "B": deque()}, total=1)
    assert s.next_for("A") == one("a")
    s.failed(one("a"), "A")
    assert s.next_for("B") == one("a")
    assert s.attempts[one("a")] == 2
