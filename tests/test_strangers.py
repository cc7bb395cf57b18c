"""The stranger table alone: bounded in all and per host, and a newcomer is never refused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peer.strangers import Strangers


def test_a_host_at_its_bound_gives_up_its_oldest() -> None:
    table: Strangers[str] = Strangers(limit=8, per_host=2)
    assert table.admit("a1", "A") == [] and table.admit("a2", "A") == []
    assert table.admit("b1", "B") == []
    assert table.admit("a3", "A") == ["a1"]
    assert "a1" not in table and "a3" in table and len(table) == 3


def test_a_full_table_evicts_the_oldest_of_the_host_holding_the_most() -> None:
    table: Strangers[str] = Strangers(limit=4, per_host=4)
    for name, host in [("b1", "B"), ("a1", "A"), ("a2", "A"), ("c1", "C")]:
        table.admit(name, host)
    assert table.admit("d1", "D") == ["a1"], "A holds the most; its oldest goes, not B's older"
    assert table.admit("e1", "E") == ["b1"], "a tie: the oldest among the busiest hosts"


def test_keep_forgets_the_introduced() -> None:
    table: Strangers[str] = Strangers(limit=2, per_host=2)
    table.admit("a", "A")
    table.admit("b", "A")
    table.keep(lambda c: c != "a")
    assert table.admit("c", "A") == [], "a's place was freed by its introduction"


@given(st.lists(st.sampled_from("ABCDE"), max_size=60))
def test_every_newcomer_gets_in_and_the_bounds_hold(hosts: list[str]) -> None:
    table: Strangers[int] = Strangers(limit=8, per_host=3)
    where: dict[int, str] = {}
    for i, host in enumerate(hosts):
        evicted = table.admit(i, host)
        where[i] = host
        assert i in table and i not in evicted
        live = [n for n in where if n in table]
        assert len(live) <= 8
        assert all(sum(where[n] == h for n in live) <= 3 for h in "ABCDE")
