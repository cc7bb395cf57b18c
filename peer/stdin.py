"""Command lines from stdin, read by a thread so that any stdin works.

asyncio's pipe transport refuses a regular file (`peer < commands.jsonl`) and cannot poll
`/dev/null` (a daemon's stdin), so a blocking reader thread hands complete lines to the loop
instead, one at a time (it waits for each to be taken: a flood of input cannot pile up in
memory). A line longer than `limit` is dropped whole and reported as `TOO_LONG`; end of input
is `None`. The thread is a daemon: a read still blocked when the peer exits does not hold it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import BinaryIO, Final

TOO_LONG: Final = b""  # never a real line: those end with a newline or are non-empty at EOF


def _read(stream: BinaryIO, limit: int) -> list[bytes | None]:
    """The next item: a line, `TOO_LONG` (after dropping the rest of it), or `None` at EOF."""
    line = stream.readline(limit + 1)
    if not line:
        return [None]
    if len(line) <= limit or line.endswith(b"\n"):
        return [line]
    while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
        pass
    return [TOO_LONG] if rest else [TOO_LONG, None]


def stdin_lines(stream: BinaryIO, limit: int) -> asyncio.Queue[bytes | None]:
    """Start the reader; its items arrive on the returned queue, ending with `None`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)

    def pump() -> None:
        try:
            while True:
                items = _read(stream, limit)
                for item in items:
                    asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
                if items[-1] is None:
                    return
        except (OSError, ValueError, RuntimeError):  # stdin closed under us, or the loop ended
            return

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return queue
