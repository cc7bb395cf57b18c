"""Small hostile files: read only when a regular file within the limit, never through a link."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from peer.files import read_small_file


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
