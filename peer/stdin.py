"""Command lines from stdin, read by a thread so that any stdin works.

asyncio's pipe transport refuses a regular file (`peer < commands.jsonl`) and cannot poll
`/dev/null` (a daemon's stdin), so a blocking reader thread hands complete lines to the loop
instead, one at a time (it waits for each to be taken: a flood of input cannot pile up in
memory). A line longer than `limit` is dropped whole and reported as `TOO_LONG`; end of input
(or a descriptor that cannot be read) is `None`. The thread is a daemon: a read still blocked
when the peer exits does not hold it.

The thread reads the raw descriptor (`FdLines`), never `sys.stdin.buffer`: a daemon thread
blocked in `BufferedReader.readline` holds the reader's lock, and when the main thread then
finishes (after `shutdown` or SIGTERM, stdin still open, as under any supervisor) the
interpreter aborts with "Fatal Python error: _enter_buffered_busy" and status 134. A blocked
`os.read` holds no lock.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Final, Protocol

TOO_LONG: Final = b""  # never a real line: those end with a newline or are non-empty at EOF
_READ_SIZE: Final = 64 * 1024


class LineSource(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class FdLines:
    """`readline(limit)` over a raw file descriptor with a buffer of our own (see above)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._eof = False

    def readline(self, size: int = -1, /) -> bytes:
        limit = size if size > 0 else 1 << 62
        while True:
            newline = self._buf.find(b"\n", 0, limit)
            if newline >= 0 or len(self._buf) >= limit or self._eof:
                end = newline + 1 if newline >= 0 else min(limit, len(self._buf))
                line = bytes(self._buf[:end])
                del self._buf[:end]
                return line
            data = os.read(self._fd, _READ_SIZE)
            self._eof = not data
            self._buf += data


def _read(stream: LineSource, limit: int) -> list[bytes | None]:
    """The next item: a line, `TOO_LONG` (after dropping the rest of it), or `None` at EOF."""
    line = stream.readline(limit + 1)
    if not line:
        return [None]
    if len(line) <= limit or line.endswith(b"\n"):
        return [line]
    while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
        pass
    return [TOO_LONG] if rest else [TOO_LONG, None]


def stdin_lines(stream: LineSource, limit: int) -> asyncio.Queue[bytes | None]:
    """Start the reader; its items arrive on the returned queue, ending with `None`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)

    def hand_over(item: bytes | None) -> None:
        put = queue.put(item)
        try:
            handed = asyncio.run_coroutine_threadsafe(put, loop)
        except RuntimeError:  # the loop is closed: the put never runs, and must not say so
            put.close()  # ("coroutine was never awaited" on a peer's stderr, as it ends)
            raise
        handed.result()

    def pump() -> None:
        try:
            while True:
                try:
                    items = _read(stream, limit)
                except OSError:  # stdin closed or unreadable: as good as its end
                    items = [None]
                for item in items:
                    hand_over(item)
                if items[-1] is None:
                    return
        except RuntimeError:  # the loop ended first: nobody is left to read
            return

    threading.Thread(target=pump, name="stdin", daemon=True).start()
    return queue
