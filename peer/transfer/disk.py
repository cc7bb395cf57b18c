"""Received bytes on our own disk, and the figures a finished transfer reports."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


class LocalWriteError(Exception):
    """Writing to our own disk failed (ENOSPC, EIO): no source is to blame, abort the download.

    Deliberately not an OSError, so the transport does not mistake it for a dead source.
    """


def write_all(fd: int, data: bytes, offset: int) -> None:
    """`pwrite` all of `data`: a filling disk may write part of it before it fails."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "the disk accepted no bytes")
        view, offset = view[written:], offset + written


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def figures(
    total_bytes: int, started: float, chunks: int, bytes_per_source: dict[str, int]
) -> dict[str, Any]:
    """The fields of `download-finished`, for a download or a streamed install."""
    duration = max(time.monotonic() - started, 1e-6)
    mib_per_s = total_bytes / MIB / duration
    return {
        "bytes": total_bytes,
        "duration_ms": round(duration * 1000, 3),
        "mib_per_s": round(mib_per_s, 3),
        "mbit_per_s": round(mib_per_s * 8.388608, 3),
        "chunks": chunks,
        "bytes_per_source": bytes_per_source,
    }
