"""The node's tasks: one cancelled before it ever ran (at shutdown) leaves no coroutine that
Python then reports on stderr as "never awaited" (the lab's peer-health check fails on it)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings

from nodes import Start, ready


async def test_a_task_cancelled_before_it_ran_leaves_no_unawaited_coroutine(
    start: Start,
) -> None:
    a = await ready(await start("a"))
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = a.node.spawn(work(), "never-runs")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # the task's done callbacks run (the node lets go of it)
        del task  # the coroutine is reported when it is collected
        gc.collect()
    assert ran == []
    assert not [w for w in caught if "never awaited" in str(w.message)], caught
