"""The copies of a download's chunks in flight: where their bytes go, what they have received,
and which copy wins when two race (the end game).

A chunk normally has one copy in flight, received straight into its place in the game file.
In the end game it may have two: the holder's, in place, and a duplicate's, in a scratch file.
The first copy verified against the validated digest claims the chunk; the other is cancelled
and waited for (its lane socket cut and its thread stopped) before the winner goes on, so no
byte of a losing copy can land after the claim.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from peer import digest
from peer.errors import PeerError
from peer.files import write_all
from peer.transfer.plan import Chunk, Scheduler
from peer.transfer.sources import LocalWriteError


class ChunkWriter:
    """Where one chunk's bytes go as they arrive: written at `base` of `fd` (the chunk's place
    in the game file, or the start of an end-game scratch file) and hashed, in the lane's
    thread, never past the chunk's end."""

    def __init__(self, fd: int, chunk: Chunk, base: int) -> None:
        self.fd, self.chunk, self.base = fd, chunk, base
        self.hasher = digest.hasher()
        self.got = 0

    def write(self, data: memoryview | bytes) -> None:
        if self.got + len(data) > self.chunk.length:
            raise PeerError("bad-chunk", "source sent more bytes than asked")
        try:
            write_all(self.fd, data, self.base + self.got)
        except OSError as exc:
            raise LocalWriteError(f"{self.chunk.path}: {exc}") from exc
        self.hasher.update(data)
        self.got += len(data)


class Lost(Exception):
    """Another copy of this chunk was verified first; this copy is dropped."""


class Copies:
    """Every copy in flight of one download, by chunk and by source."""

    def __init__(self, sources: Iterable[str]) -> None:
        # The copies of each chunk being fetched (two in the end game), and who verified first.
        self.fetching: dict[Chunk, dict[str, asyncio.Task[None]]] = {}
        self.won: dict[Chunk, str] = {}
        # Each source's sinks in flight, and since when its rate was last reported.
        self.sinks: dict[str, dict[Chunk, ChunkWriter]] = {s: {} for s in sources}
        self.busy_since: dict[str, float] = {}

    def sink(self, chunk: Chunk, peer_id: str, fd: int, base: int) -> ChunkWriter:
        sink = ChunkWriter(fd, chunk, base)
        self.sinks[peer_id][chunk] = sink
        return sink

    async def claim(self, chunk: Chunk, peer_id: str) -> None:
        """This copy of `chunk` is verified: it wins unless another was first (then `Lost`).
        The other copy is cancelled, and waited for until nothing of it can be written."""
        if chunk in self.won:
            raise Lost
        self.won[chunk] = peer_id
        others = [t for p, t in self.fetching.get(chunk, {}).items() if p != peer_id]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others)

    def sample(self, sched: Scheduler, peer_id: str) -> None:
        """Tell the planner what `peer_id`'s copies received since it last asked."""
        sinks = self.sinks[peer_id]
        if sinks:
            now = time.monotonic()
            sched.observe(
                peer_id, now - self.busy_since[peer_id], {c: s.got for c, s in sinks.items()}
            )
            self.busy_since[peer_id] = now

    def sample_all(self, sched: Scheduler) -> None:
        for peer_id in self.sinks:
            self.sample(sched, peer_id)

    async def attempt(
        self, sched: Scheduler, chunk: Chunk, peer_id: str, fetch: Coroutine[Any, Any, None]
    ) -> bool:
        """Run one copy's `fetch` in a task of its own, so that the other copy's winner can
        cancel it; False when the other copy won."""
        if not self.sinks[peer_id]:
            self.busy_since[peer_id] = time.monotonic()
        task = asyncio.create_task(fetch)
        task.add_done_callback(_outcome_read)
        self.fetching.setdefault(chunk, {})[peer_id] = task
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():  # the download is stopping: the fetch stops first
                task.cancel()
                await asyncio.wait({task})
            self.sample(sched, peer_id)
            self.sinks[peer_id].pop(chunk, None)
            copies = self.fetching.get(chunk, {})
            copies.pop(peer_id, None)
            if not copies:
                self.fetching.pop(chunk, None)
        if task.cancelled():
            return False  # only a winning copy cancels a fetch
        exc = task.exception()
        if isinstance(exc, Lost):
            return False
        if exc is not None:
            raise exc
        return True


def _outcome_read(task: asyncio.Task[None]) -> None:
    """Read a copy's outcome as it ends. `attempt` raises a failure itself, unless its download
    stopped first (the worker cancelled in the step the copy failed): then the failure is moot,
    and must not reach stderr as "Task exception was never retrieved" (N01 found it)."""
    if not task.cancelled():
        task.exception()
