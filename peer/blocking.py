"""Blocking filesystem work, run in a thread without letting a cancel race it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(work: Callable[..., T], *args: Any) -> T:
    """Run blocking `work` in a thread; a cancel takes effect only once it has finished.

    A thread cannot be stopped, so letting the awaiting task move on would race the thread
    (for example a rollback deleting files that a commit is still renaming).
    """
    future = asyncio.get_running_loop().run_in_executor(None, work, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise
