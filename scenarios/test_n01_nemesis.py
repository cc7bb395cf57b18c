"""N01 Nemesis run: five peers under a mixed workload while a seeded schedule cuts, splits,
loses, caps, freezes and kills about every ten seconds, then heals everything; the checker
then judges what is left (harness/checker.py).

`--nemesis-seed S` and `--nemesis-minutes M` choose the run (`./lab nemesis` passes them); the
seed fixes which fault, which peers, when and for how long, and the workload's choices, so a
failing seed replays. CI runs the default: seed 1, 45 seconds of faults. Per fault kind, how
often it fired and what it caused are run-log figures and printed as a table.
"""

import threading
import time

import pytest

from harness.checker import (
    complete_problems,
    effects,
    table_text,
    terminal_problems,
    view_problems,
)
from harness.lab import Lab
from harness.nemesis import Fault
from harness.peer import PeerHandle
from harness.runlog import Figure
from harness.schedule import Step, schedule
from harness.workload import DOWNLOADABLE, Workload
from peer.catalog import load_catalog

STALE = 8.0  # the peers' default stale timeout: what a fault's effects may lag behind it


def apply(lab: Lab, step: Step, peers: list[PeerHandle]) -> Fault:
    """Start the step's fault; a kill's heal restarts the peer and reconnects it (its port
    changes, so nobody could redial it)."""
    targets = [peers[i] for i in step.targets]
    nemesis = lab.nemesis
    if step.fault in ("partition", "one-way-cut"):
        others = [peers[i] for i in step.others]
        return nemesis.partition(targets, others, one_way=step.fault == "one-way-cut")
    if step.fault == "loss":
        return nemesis.loss(targets, step.percent, everyone=peers)
    if step.fault == "rate-cap":
        return nemesis.rate_cap(targets[0], step.mbit)
    if step.fault == "pause":
        return nemesis.pause(targets[0])
    (victim,) = targets
    victim.kill()

    def restart() -> None:
        victim.restart()
        victim.connect(*[p for p in peers if p is not victim])

    return nemesis.custom("kill", {"peer": victim.name}, restart)


@pytest.mark.scenario("N01")
@pytest.mark.requires_docker("network faults need network namespaces (iptables, tc)")
def test_n01_nemesis(lab: Lab, figure: Figure, request: pytest.FixtureRequest) -> None:
    seed = int(request.config.getoption("--nemesis-seed"))
    seconds = 60 * float(request.config.getoption("--nemesis-minutes"))
    unrar = ("--unrar", lab.backend.unrar)
    sources = [lab.peer(n, fixture="fixture-alpha") for n in ("source-a", "source-b")]
    streamer = lab.peer("streamer", fixture="fixture-bravo", args=unrar)
    clients = [lab.peer(n) for n in ("client-1", "client-2")]
    peers = [*sources, streamer, *clients]
    for i, peer in enumerate(peers):
        peer.connect(*peers[i + 1 :])
    catalog = load_catalog()
    expected = {g: sources[0].manifest(g) for g in DOWNLOADABLE}
    steps = schedule(seed, seconds, len(peers), killable=(0, 1, 2))
    figure("seed", seed)
    print(f"\nN01 seed {seed}: {len(steps)} faults over {seconds:.0f} s")

    workload = Workload(seed, clients, sources, streamer, expected, catalog)
    stop = threading.Event()
    threads = workload.run(stop)
    began = time.monotonic()
    try:
        for step in steps:
            if stop.wait(max(0.0, began + step.at - time.monotonic())):
                break  # the schedule's clock, not a sleep for something to happen
            fault = apply(lab, step, peers)
            stop.wait(step.hold)
            fault.heal()
    finally:
        stop.set()
        lab.nemesis.heal_all()
        for thread in threads:
            thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a workload thread never finished"

    peer_names = {p.name: p for p in peers}
    for peer in peers:  # views converge once healed: everyone linked to everyone again
        assert peer.send("wait-peers", count=len(peers) - 1, timeout_s=60, timeout=90)
    table = effects(lab.nemesis.faults, peers, linger=STALE)
    print(table_text(table))
    for kind, row in table.items():
        for what, count in row.items():
            figure(f"{kind}_{what}", count)
    figure("operations", len(workload.ops))
    problems = [
        *workload.problems,
        *terminal_problems(workload.ops, peer_names),
        *complete_problems(clients, expected),
        *view_problems(peers, catalog),
    ]
    assert not problems, f"seed {seed}:\n" + "\n".join(problems)
    assert len(lab.nemesis.faults) == len(steps), "every scheduled fault was applied"
    assert workload.ops, "the workload did something"
