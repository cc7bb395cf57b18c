"""Whole nodes in one event loop, for the tests that run live peers (test_node.py and its kin).

`start(name, **settings)` (the fixture in tests/conftest.py, over `nodes_in`) makes a node on
127.0.0.1 with its own games and state dirs under tmp_path (a second `start` with the same name
reuses them: a restart); `ready(peer)` starts it. Every node still running at the end is shut
down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from peer.commands import parse_command
from peer.console import SPECS
from peer.node import Node
from peer.settings import Settings

CATALOG = {"bfbc2": "20250201", "cnc4": "20250301", "cnctw": "20260501"}
CHUNK = 64 * 1024


# Successes, by their prefix, and the terminal events that mean the operation ended otherwise.
_ENDS_OF_DOWNLOAD = ("download-failed", "download-cancelled", "install-failed")
FAILURES: dict[str, tuple[str, ...]] = {
    "download-": _ENDS_OF_DOWNLOAD,
    "install-": ("install-failed", "download-failed", "download-cancelled"),
    "uninstall-": ("uninstall-failed",),
}


class Peer:
    """A started node and everything it emitted, with waits that explain themselves."""

    def __init__(self, name: str, node: Node, events: list[dict[str, Any]]) -> None:
        self.name, self.node, self.events = name, node, events
        self.changed = asyncio.Event()

    def record(self, event: str, /, **fields: Any) -> None:
        self.events.append({"event": event, **fields})
        self.changed.set()

    async def wait(
        self, event: str, timeout: float = 20.0, since: int = 0, count: int = 1, **where: Any
    ) -> dict[str, Any]:
        """The `count`-th `event` matching `where` at or after index `since` (the last one).

        Waiting for a success fails at once when a failure of the same operation ends it
        instead, so a broken peer fails a test in milliseconds rather than at the timeout.
        """
        ends = FAILURES.get(event.split("-")[0] + "-", ())
        contrary = tuple(e for e in ends if e != event)

        def matching(names: tuple[str, ...]) -> list[dict[str, Any]]:
            return [
                e
                for e in self.events[since:]
                if e["event"] in names and all(e.get(k) == v for k, v in where.items())
            ]

        try:
            async with asyncio.timeout(timeout):
                while len(hits := matching((event,))) < count:
                    if failed := matching(contrary):
                        raise AssertionError(f"{self.name}: {failed[0]} instead of {event}")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            tail = "\n".join(json.dumps(e, default=str)[:300] for e in self.events[-15:])
            why = f"{self.name}: no {count}x {event} {where} in {timeout}s; last:\n{tail}"
            raise AssertionError(why) from None
        return hits[count - 1]

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    async def run(self, cmd: str, **args: Any) -> Any:
        return await self.node.run_command(parse_command(json.dumps({"cmd": cmd, **args}), SPECS))

    @property
    def games(self) -> Path:
        return self.node.library.games_dir


Start = Callable[..., Any]


@contextlib.asynccontextmanager
async def nodes_in(tmp_path: Path) -> AsyncIterator[Start]:
    """The body of the `start` fixture (tests/conftest.py), and of a test that wants two."""
    peers: list[Peer] = []

    async def start_peer(name: str, **overrides: Any) -> Peer:
        fields: dict[str, Any] = {"listen_host": "127.0.0.1", "chunk_size": CHUNK, **overrides}
        settings = Settings(
            games_dir=tmp_path / name / "games",
            state_dir=tmp_path / name / "state",
            catalog=dict(CATALOG),
            mdns=False,
            **fields,
        )
        settings.games_dir.mkdir(parents=True, exist_ok=True)
        events: list[dict[str, Any]] = []
        peer = Peer(name, None, events)  # type: ignore[arg-type]
        peer.node = Node(settings, peer.record)
        peers.append(peer)
        return peer

    try:
        yield start_peer
    finally:
        for peer in peers:
            if peer.node.identity is not None:
                await peer.node.shutdown()


async def ready(peer: Peer) -> Peer:
    await peer.node.start()
    return peer
