"""stdin lines, read by a thread: whole lines, over-long lines dropped whole, then EOF."""

from __future__ import annotations

import io
import os

import pytest

from peer.stdin import TOO_LONG, FdLines, LineSource, _read, stdin_lines


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
