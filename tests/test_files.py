"""Small hostile files: read only when a regular file within the limit, never through a link."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from peer.files import read_small_file, write_all


def test_a_small_regular_file_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 8)
    assert read_small_file(tmp_path / "f", 8) == b"x" * 8


def test_a_file_past_the_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 9)
    with pytest.raises(ValueError, match=r"f is larger than 8 bytes"):
        read_small_file(tmp_path / "f", 8)


@pytest.mark.parametrize("kind", ["missing", "link", "fifo", "directory"])
def test_anything_else_is_an_os_error(tmp_path: Path, kind: str) -> None:
    (tmp_path / "target").write_bytes(b"x")
    path = tmp_path / "f"
    if kind == "link":
        path.symlink_to(tmp_path / "target")
    elif kind == "fifo":
        os.mkfifo(path)  # opening it to read without O_NONBLOCK would hang this test
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(OSError) as err:
        read_small_file(path, 8)
    if kind in ("fifo", "directory"):  # opened, then refused by its type
        assert err.value.errno == errno.EINVAL and "not a regular file" in str(err.value)


def test_a_partial_write_continues_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite

    def three_at_a_time(fd: int, data: bytes, offset: int) -> int:
        return real_pwrite(fd, bytes(data[:3]), offset)

    monkeypatch.setattr(os, "pwrite", three_at_a_time)
    path = tmp_path / "f"
    path.write_bytes(b"." * 20)
    fd = os.open(path, os.O_WRONLY)
    try:
        write_all(fd, b"0123456789", 5)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"....." + b"0123456789" + b"....."


def test_a_disk_that_accepts_nothing_is_an_io_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def nothing(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)
        if len(calls) > 3:
            raise AssertionError("write_all kept retrying a disk that takes nothing")
        return 0

    monkeypatch.setattr(os, "pwrite", nothing)
    with pytest.raises(OSError) as caught:
        write_all(99, b"data", 0)
    assert (caught.value.errno, caught.value.strerror) == (errno.EIO, "the disk accepted no bytes")
    assert calls == [0]
