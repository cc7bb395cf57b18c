"""A lab is one scenario's world: a backend, the peers started in it, and their timelines.

The timeline (written as JSON per scenario, drawn by `harness.report`) holds each peer's
records and stderr tail and a `lab` list: what the lab did (start, kill, restart, commands,
file mutations, throttles, a wait that timed out, the test's failure), all on one clock.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict, Unpack

from harness.backends.base import Backend, PeerSpec
from harness.nemesis import Nemesis
from harness.peer import PeerHandle
from harness.waiting import DEFAULT_TIMEOUT


class PeerOptions(TypedDict, total=False):
    """A peer's options besides its name (PeerSpec's fields). `power`: its games and state
    dirs are on powerfs, so a power cut loses what it never synced."""

    fixture: str | None
    args: tuple[str, ...]
    games_tmpfs: str | None
    mdns: bool
    power: bool


class Lab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.peers: list[PeerHandle] = []
        self.actions: list[dict[str, Any]] = []  # the lab's own, not one peer's (a failure)
        net_admin = getattr(backend, "net_admin", None)
        self.nemesis = Nemesis(
            None if net_admin is None else lambda peer, script: net_admin(peer.process, script),
            self._record,
            getattr(backend, "helper", None),
        )

    def _record(self, action: str, **fields: Any) -> None:
        self.actions.append({"_t": time.monotonic(), "action": action, **fields})

    def note_failure(self, message: str) -> None:
        """Mark the moment the scenario failed, with pytest's one-line reason."""
        self._record("failed", message=message)

    def peer(
        self, name: str, timeout: float = DEFAULT_TIMEOUT, **options: Unpack[PeerOptions]
    ) -> PeerHandle:
        """Start a peer and wait until it is ready (its address is then on the handle)."""
        handle = self.create(name, **options)
        handle.start(timeout=timeout)
        return handle

    def create(self, name: str, **options: Unpack[PeerOptions]) -> PeerHandle:
        """A peer made but not started (`peer` starts it)."""
        spec = PeerSpec(name=name, **options)
        handle = PeerHandle(self.backend.create(spec), spec)
        self.peers.append(handle)
        return handle

    def unrar_of(self, name: str) -> str:
        """Where `stream_sources` points a source's `--unrar`: nothing, until a scenario puts
        a program there."""
        return self.backend.scratch(f"{name}-unrar")

    def stream_sources(self, fixture: str = "fixture-bravo") -> tuple[PeerHandle, PeerHandle]:
        """Two sources of `fixture` in the order a receiver tries them (address order, which
        start order does not decide: "127.x.y.10" sorts before "127.x.y.9"). Both start with
        `--unrar` at `unrar_of(name)`, where nothing is yet, so a scenario can make the first
        broken or lying after the fact and give the second the real unrar."""
        one, two = (
            self.peer(name, fixture=fixture, args=("--unrar", self.unrar_of(name)))
            for name in ("source-1", "source-2")
        )
        first, second = sorted((one, two), key=lambda p: p.addr)
        return first, second

    def timeline(self, scenario: str) -> dict[str, Any]:
        """Every peer's records and every lab action in order, timed since the lab's first."""
        lab = [*self.actions, *({"peer": p.name, **a} for p in self.peers for a in p.actions)]
        t0 = min(
            [r["_t"] for p in self.peers for r in p.records[:1]] + [a["_t"] for a in lab],
            default=0.0,
        )

        def timed(r: dict[str, Any]) -> dict[str, Any]:
            return {"t": round(r["_t"] - t0, 3), **{k: v for k, v in r.items() if k != "_t"}}

        return {
            "scenario": scenario,
            "peers": {
                p.name: {
                    "addr": p.addr,
                    "peer_id": p.peer_id,
                    "records": [timed(r) for r in p.records],
                    "stderr_tail": p.stderr[-50:],
                    "non_json_stdout": p.garbage,
                }
                for p in self.peers
            },
            "lab": [timed(a) for a in sorted(lab, key=lambda a: float(a["_t"]))],
        }

    def write_timeline(self, path: Path, scenario: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.timeline(scenario), indent=1, default=str))

    def end_peers(self) -> list[str]:
        """Stop every peer still running with SIGTERM, all at once, and judge how each of its
        runs ended (`PeerHandle.end`): the problems found, or [] when every peer ended well."""
        heal_failure = None
        try:
            self.nemesis.heal_all()  # every fault undone, even when the test failed
        except Exception as exc:
            heal_failure = f"nemesis: a heal failed: {exc}"
        if not self.peers:
            return [heal_failure] if heal_failure else []
        with ThreadPoolExecutor(max_workers=len(self.peers)) as pool:
            found = list(pool.map(lambda p: p.end(), self.peers))
        problems = [problem for per_peer in found for problem in per_peer]
        if heal_failure:
            problems.insert(0, heal_failure)
        if problems:
            self._record("unhealthy-ending", problems=problems)
        return problems

    def close(self) -> None:
        self.backend.close()
