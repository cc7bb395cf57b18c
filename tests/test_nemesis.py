"""The nemesis's rules and bookkeeping, without Docker: which iptables rules each fault puts in
which peer's namespace, that every fault is healed once, and that the timeline gets both ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.nemesis import (
    Nemesis,
    Target,
    chain,
    dropped,
    install_script,
    loss_rules,
    remove_script,
)


@dataclass
class FakeProcess:
    dead: bool = False

    def exited(self) -> bool:
        return self.dead


@dataclass(eq=False)
class FakePeer:
    name: str
    addr: str
    process: FakeProcess = field(default_factory=FakeProcess)
    paused: bool = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


A, B, C = (FakePeer(n, f"10.9.0.{i}:4000") for i, n in enumerate("abc", 2))


class World:
    def __init__(self, fail_on: str | None = None) -> None:
        self.scripts: list[tuple[str, str]] = []
        self.timeline: list[dict[str, Any]] = []
        self.fail_on = fail_on
        self.nemesis = Nemesis(self.net_admin, self.record)

    def net_admin(self, peer: Target, script: str) -> tuple[int, bytes]:
        self.scripts.append((peer.name, script))
        return (1, b"boom") if peer.name == self.fail_on else (0, b"")

    def record(self, action: str, **fields: Any) -> None:
        self.timeline.append({"action": action, **fields})

    def rules(self, name: str) -> list[str]:
        return [
            line.split(" ", 4)[4]
            for peer, script in self.scripts
            if peer == name
            for line in script.splitlines()
            if line.startswith("iptables -w -A")
        ]


def test_a_partition_drops_both_ways_on_both_sides_in_a_chain_of_its_own() -> None:
    world = World()
    fault = world.nemesis.partition([A], [B, C])
    assert world.rules("a") == [
        "-d 10.9.0.3 -j DROP",
        "-d 10.9.0.4 -j DROP",
        "-s 10.9.0.3 -j DROP",
        "-s 10.9.0.4 -j DROP",
    ]
    assert world.rules("b") == ["-d 10.9.0.2 -j DROP", "-s 10.9.0.2 -j DROP"]
    script = install_script(fault.fault_id, [])
    assert f"-I INPUT 1 -j {chain(fault.fault_id)}" in script
    assert f"-I OUTPUT 1 -j {chain(fault.fault_id)}" in script
    assert "REJECT" not in "".join(s for _, s in world.scripts)  # silent: no RST, no ICMP


def test_a_one_way_cut_loses_only_what_a_sends_to_b() -> None:
    world = World()
    world.nemesis.partition([A], [B], one_way=True)
    assert world.rules("a") == ["-d 10.9.0.3 -j DROP"]
    assert world.rules("b") == ["-s 10.9.0.2 -j DROP"]


def test_loss_is_random_per_packet_leaving_and_arriving_from_outside_the_set() -> None:
    assert loss_rules(5, ["10.9.0.4"]) == [
        "-o eth0 -m statistic --mode random --probability 0.0500 -j DROP",
        "-s 10.9.0.4 -m statistic --mode random --probability 0.0500 -j DROP",
    ]
    world = World()
    world.nemesis.loss([A, B], 5, everyone=[A, B, C])
    assert world.rules("a") == loss_rules(5, ["10.9.0.4"])
    assert world.rules("c") == []


def test_heal_removes_each_chain_once_and_both_ends_are_on_the_timeline() -> None:
    world = World()
    fault = world.nemesis.partition([A], [B])
    world.scripts.clear()
    fault.heal()
    fault.heal()
    assert sorted(world.scripts) == [
        ("a", remove_script(fault.fault_id)),
        ("b", remove_script(fault.fault_id)),
    ]
    assert [(t["action"], t["fault"]) for t in world.timeline] == [
        ("fault", fault.fault_id),
        ("heal", fault.fault_id),
    ]
    assert not fault.active


def test_a_dead_peer_is_not_asked_to_heal_its_gone_namespace() -> None:
    world = World()
    dead = FakePeer("d", "10.9.0.9:1", FakeProcess())
    fault = world.nemesis.partition([A], [dead])
    dead.process.dead = True
    world.scripts.clear()
    fault.heal()
    assert [peer for peer, _ in world.scripts] == ["a"]


def test_a_fault_that_fails_half_way_is_undone_where_it_was_applied() -> None:
    world = World(fail_on="b")
    with pytest.raises(RuntimeError, match="nemesis script failed on b"):
        world.nemesis.partition([A], [B])
    removed = [p for p, s in world.scripts if s.startswith("iptables -w -D")]
    assert removed == ["a"]


def test_heal_all_undoes_every_active_fault_pause_included() -> None:
    world = World()
    cut = world.nemesis.partition([A], [B])
    lid = world.nemesis.pause(C)
    assert C.paused
    world.nemesis.heal_all()
    assert not C.paused and not cut.active and not lid.active
    assert [t["action"] for t in world.timeline] == ["fault", "fault", "heal", "heal"]


def test_network_faults_need_a_backend_with_namespaces() -> None:
    with pytest.raises(RuntimeError, match="Docker backend"):
        Nemesis(None, lambda *a, **k: None).partition([A], [B])


def test_dropped_sums_the_packet_counters_of_a_chain_listing() -> None:
    listing = """Chain LANPEER-3 (2 references)
    pkts      bytes target     prot opt in     out     source               destination
      12     3400 DROP       all  --  *      eth0    0.0.0.0/0            0.0.0.0/0
       5      700 DROP       all  --  *      *       10.9.0.4             0.0.0.0/0
"""
    assert dropped(listing) == 17
    assert dropped("Chain X (0 references)\n pkts bytes target\n") == 0
