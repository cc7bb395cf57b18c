"""`Copies`, the chunks' copies in flight: a copy abandoned while its download stops.

The nemesis run (N01, seed 2) caught "Task exception was never retrieved" for a fetch that a
source refused (`not-servable`) in the very step its download was being stopped: the worker
was cancelled in `Copies.attempt` after the fetch's task had already failed, and nobody read
that failure. An abandoned copy's outcome is moot, but it must not be left for the loop to
report as an error on stderr.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from peer.errors import PeerError
from peer.transfer.copies import Copies
from peer.transfer.plan import Chunk, Scheduler

CHUNK = Chunk(path="g.bin", offset=0, length=4, digest="0" * 64)


async def test_a_copy_that_fails_as_its_download_stops_is_not_reported_as_unretrieved() -> None:
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _l, context: reported.append(context))
    copies = Copies(["a"])
    sched = Scheduler.plan([CHUNK], ("a",))
    worker: list[asyncio.Task[bool]] = []

    async def fetch() -> None:
        worker[0].cancel()  # the download stops in the same step as the copy fails
        raise PeerError("not-servable", "game g has an operation in progress")

    worker.append(asyncio.create_task(copies.attempt(sched, CHUNK, "a", fetch())))
    with pytest.raises(asyncio.CancelledError):
        await worker[0]
    assert not copies.fetching, "the abandoned copy is forgotten"
    worker.clear()  # the last reference to the attempt, and through it to the copy's task
    gc.collect()
    await asyncio.sleep(0)
    assert reported == [], reported
