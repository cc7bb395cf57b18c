"""Bytes that differ but keep every CRC32: what a liar streams to defeat a CRC-only check.

Used by the in-process stream tests and X04, where it runs inside the liar's world as a filter
(`python3 crcforge.py`, stdin to stdout), so it needs nothing beyond the standard library.
The first byte is flipped and bytes 4..8 are chosen so that the CRC32 register after byte 8 is
the honest one's: every CRC32 over a range that starts at 0 and ends at or after byte 8 (so
every archive entry's, when the first entry is at least 8 bytes) is unchanged.
"""

from __future__ import annotations

import sys
import zlib

POLY = 0xEDB88320
TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ POLY if _c & 1 else _c >> 1
    TABLE.append(_c)
TOP = {t >> 24: i for i, t in enumerate(TABLE)}


def forge(data: bytes, crc: int) -> bytes:
    """`data` with its last 4 bytes replaced so that its CRC32 is `crc`."""
    reg, indices = crc ^ 0xFFFFFFFF, []
    for _ in range(4):  # run the register back from the target: which table rows it took
        i = TOP[reg >> 24]
        indices.append(i)
        reg = ((reg ^ TABLE[i]) << 8) & 0xFFFFFFFF
    reg, tail = zlib.crc32(data[:-4]) ^ 0xFFFFFFFF, b""
    for i in reversed(indices):  # and forward from the prefix: the bytes that take those rows
        tail += bytes([(reg ^ i) & 0xFF])
        reg = (reg >> 8) ^ TABLE[i]
    return data[:-4] + tail


def corrupt_keeping_crc(data: bytes) -> bytes:
    """`data` with its first byte flipped and every CRC32 from byte 0 past byte 8 intact."""
    if len(data) < 8:
        return data
    head = forge(bytes([data[0] ^ 1]) + data[1:8], zlib.crc32(data[:8]))
    return head + data[8:]


if __name__ == "__main__":
    sys.stdout.buffer.write(corrupt_keeping_crc(sys.stdin.buffer.read()))
