"""Reading a small file that is hostile input: a sentinel, a progress record, a state file.

Whoever can write the directory chooses what the name is: a link to any file we can read, a
FIFO that blocks the reader forever, a device that never ends, or a file far larger than the
format allows. So the file is opened without following a link and without blocking, and read
only if it is a regular file of at most `limit` bytes.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_small_file(path: Path, limit: int) -> bytes:
    """The whole file; OSError if it is missing, a link or not a regular file, ValueError if it
    is larger than `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path.name} is not a regular file")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if info.st_size > limit or len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data
