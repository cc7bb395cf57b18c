"""Waiting on several sources' answers without waiting on the slowest (pure asyncio).

A source that never answers (a reply it cannot produce, a hang) must not hold a download for
the whole describe timeout when others answered. So once one real answer is in, the rest get a
grace period: `grace` seconds, or as long again as that first answer took (hashing a large game
takes every source a while), whichever is longer. Those still silent then are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_with_grace(
    aws: list[Awaitable[T | None]], grace: float
) -> tuple[list[T | None], list[int]]:
    """Each awaitable's result (None standing for "no answer"), and the indexes of those
    cancelled for being late; a cancel of the caller cancels them all."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    pending: set[asyncio.Future[T | None]] = set(tasks)
    deadline: float | None = None
    try:
        while pending:
            wait = None if deadline is None else max(deadline - loop.time(), 0.0)
            done, pending = await asyncio.wait(pending, timeout=wait, return_when="FIRST_COMPLETED")
            if not done:
                break
            if deadline is None and any(t.result() is not None for t in done):
                deadline = loop.time() + max(grace, loop.time() - started)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    late = [i for i, t in enumerate(tasks) if t in pending]
    return [None if t in pending else t.result() for t in tasks], late
