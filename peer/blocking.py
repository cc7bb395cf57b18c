"""Blocking work (files, a lane's socket), run in a thread without letting a cancel race it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(
    work: Callable[..., T],
    *args: Any,
    executor: Executor | None = None,
    stop: Callable[[], None] | None = None,
) -> T:
    """Run blocking `work` in a thread (of `executor`, else the loop's default); a cancel
    takes effect only once it has finished.

    A thread cannot be stopped, so letting the awaiting task move on would race the thread
    (for example a rollback deleting files that a commit is still renaming). `stop`, called
    first on a cancel, makes a thread that waits on something (a socket) finish sooner.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, work, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if stop is not None:
            stop()
        with contextlib.suppress(Exception):
            await future
        raise
