"""stdin lines, read by a thread: whole lines, over-long lines dropped whole, then EOF."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import threading
import warnings

import pytest

from peer.stdin import TOO_LONG, FdLines, LineSource, _read, stdin_lines

LIMIT = 5.0


def items(data: bytes, limit: int, raw: bool = False) -> list[bytes | None]:
    stream: LineSource = io.BytesIO(data)
    if raw:  # the peer's own reader: a raw descriptor (a pipe here), no BufferedReader
        read_end, write_end = os.pipe()
        os.write(write_end, data)
        os.close(write_end)
        stream = FdLines(read_end)
    out = list[bytes | None]()
    while not out or out[-1] is not None:
        out.extend(_read(stream, limit))
    return out


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", [None]),
        (b"ab\n", [b"ab\n", None]),
        (b"ab\ncd", [b"ab\n", b"cd", None]),  # a last line without newline still counts
        (b"abcd\n", [b"abcd\n", None]),  # exactly the limit, with its newline
        (b"abcdef\nok\n", [TOO_LONG, b"ok\n", None]),
        (b"a" * 50 + b"\nok\n", [TOO_LONG, b"ok\n", None]),  # dropped across many reads
        (b"abcdefgh", [TOO_LONG, None]),  # over-long at EOF
    ],
)
@pytest.mark.parametrize("raw", [False, True], ids=["buffered", "fd"])
def test_lines(data: bytes, expected: list[bytes | None], raw: bool) -> None:
    assert items(data, 4, raw) == expected


async def test_the_reader_thread_delivers_every_line_then_eof() -> None:
    queue = stdin_lines(io.BytesIO(b"one\n" + b"x" * 10 + b"\ntwo\n"), limit=8)
    got = [await queue.get() for _ in range(4)]
    assert got == [b"one\n", TOO_LONG, b"two\n", None]


class Gate(io.BytesIO):
    """A stream whose first line is held back until `opened` is set."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.opened = threading.Event()
        self.reading = threading.Event()

    def readline(self, size: int | None = -1, /) -> bytes:
        self.reading.set()
        self.opened.wait(LIMIT)
        return super().readline(size)


def test_a_line_that_comes_after_the_loop_closed_is_dropped_quietly() -> None:
    """A driver that sends `shutdown` and then closes stdin: the end of stdin may come while
    the peer is ending, after its loop closed. Nothing may be left unawaited (the lab's health
    check reads "never awaited" on stderr as a defect)."""
    stream = Gate(b"late\n")

    async def start() -> None:
        stdin_lines(stream, limit=8)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asyncio.run(start())  # the loop is closed when this returns
        assert stream.reading.wait(LIMIT), "the reader never asked for a line"
        threads = [t for t in threading.enumerate() if t.name == "stdin"]
        stream.opened.set()
        for thread in threads:
            thread.join(LIMIT)
        gc.collect()
    assert not [w for w in seen if "never awaited" in str(w.message)]
