"""The nemesis run's checker: what must hold once every fault is healed and the workload
stopped, whatever the faults did on the way (Jepsen's checker, kept apart from the workload
and the nemesis).

* every operation got exactly one terminal event (a refused command none);
* every download reported finished had an exact copy (checked by the workload at once);
* nothing looks complete that is not: every root with a sentinel is the sources' exact copy;
* every peer answers `status`, and every view converges: each peer's `list-games` sources are
  exactly the peers serving each game (set-full: every change seen everywhere, none extra);
* and, at teardown as in every scenario, every peer ends cleanly (harness/health.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.nemesis import Fault
from harness.peer import PeerHandle
from harness.workload import DOWNLOADABLE, Op

EFFECTS = ("peer-lost", "download-chunk-failed", "download-source-excluded", "download-failed")


def terminal_problems(ops: Sequence[Op], peers: dict[str, PeerHandle]) -> list[str]:
    """Each accepted operation ended exactly once: one terminal event of its kind for its game
    from its start to its client's next operation on any game."""
    problems = []
    by_client: dict[str, list[Op]] = {}
    for op in ops:
        by_client.setdefault(op.client, []).append(op)
    for name, client_ops in by_client.items():
        client_ops.sort(key=lambda o: o.start)
        for op, after in zip(client_ops, [*client_ops[1:], None], strict=True):
            until = after.start if after else None
            ends = [
                e
                for e in peers[name].events(since=op.start, until=until)
                if e["event"] in op.ends and e.get("game_id") == op.game_id
            ]
            want = 0 if op.outcome.startswith("refused") else 1
            if len(ends) != want:
                names = [e["event"] for e in ends]
                problems.append(f"{name} {op.kind} {op.game_id}: {len(ends)} endings {names}")
    return problems


def complete_problems(clients: Sequence[PeerHandle], expected: dict[str, Any]) -> list[str]:
    """Every downloadable game that looks complete (has a sentinel) is an exact copy."""
    problems = []
    for client in clients:
        for game in DOWNLOADABLE:
            if client.exists(f"{game}/version.ini"):
                differs = client.manifest(game).diff(expected[game])
                if differs:
                    problems.append(f"{client.name} {game} looks complete but: {differs[:3]}")
    return problems


def serving(peer: PeerHandle, catalog: dict[str, str]) -> set[str]:
    """The games `peer` serves now, by its own account: downloaded, Ready, catalog version."""
    return {
        g["game_id"]
        for g in peer.status()["local_games"]
        if g["downloaded"]
        and g["availability"] == "Ready"
        and g["version"] == catalog.get(g["game_id"])
    }


def view_problems(peers: Sequence[PeerHandle], catalog: dict[str, str]) -> list[str]:
    """Each peer sees exactly the others serving each game (set-full over sources)."""
    libraries = {p.name: serving(p, catalog) for p in peers}
    problems = []
    for viewer in peers:
        want: dict[str, set[str]] = {}
        for other in peers:
            if other is not viewer:
                for game in libraries[other.name]:
                    want.setdefault(game, set()).add(other.peer_id)
        seen = {g: set(r["peers"]) for g, r in viewer.list_games().items() if r["peers"]}
        if seen != want:
            problems.append(f"{viewer.name} sees {seen}, the peers serve {want}")
    return problems


def effects(
    faults: Sequence[Fault], peers: Sequence[PeerHandle], linger: float
) -> dict[str, Counter[str]]:
    """Per fault kind: how often it fired, and the events its windows (from bite to heal plus
    `linger`, the stale timeout) held on every peer."""
    table: dict[str, Counter[str]] = {}
    for fault in faults:
        row = table.setdefault(fault.kind, Counter())
        row["fired"] += 1
        start, end = fault.started, (fault.healed or fault.started) + linger
        for peer in peers:
            for e in peer.events():
                if e["event"] in EFFECTS and start <= e["_t"] <= end:
                    row[e["event"]] += 1
    return table


def table_text(table: dict[str, Counter[str]]) -> str:
    head = ["fault", "fired", *EFFECTS]
    rows = [
        [kind, str(c["fired"]), *(str(c[e]) for e in EFFECTS)] for kind, c in sorted(table.items())
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in [head, *rows]
    )
