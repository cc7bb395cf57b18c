"""A lab is one scenario's world: a backend, the peers started in it, and their timelines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, PeerSpec
from harness.peer import DEFAULT_TIMEOUT, PeerHandle


class Lab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.peers: list[PeerHandle] = []

    def peer(
        self,
        name: str,
        fixture: str | None = None,
        args: tuple[str, ...] = (),
        games_tmpfs: str | None = None,
        mdns: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PeerHandle:
        """Start a peer and wait until it is ready (its address is then on the handle)."""
        spec = PeerSpec(name=name, fixture=fixture, args=args, games_tmpfs=games_tmpfs, mdns=mdns)
        handle = PeerHandle(self.backend.create(spec), spec)
        self.peers.append(handle)
        handle.start(timeout=timeout)
        return handle

    def timeline(self) -> dict[str, Any]:
        """Every peer's records in order, with each record's time since the lab's first."""
        t0 = min((p.records[0]["_t"] for p in self.peers if p.records), default=0.0)
        return {
            p.name: {
                "addr": p.addr,
                "peer_id": p.peer_id,
                "records": [
                    {"t": round(r["_t"] - t0, 3), **{k: v for k, v in r.items() if k != "_t"}}
                    for r in p.records
                ],
                "stderr_tail": p.stderr[-50:],
                "non_json_stdout": p.garbage,
            }
            for p in self.peers
        }

    def write_timeline(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.timeline(), indent=1, default=str))

    def close(self) -> None:
        self.backend.close()
