"""The one digest of content that peers vouch for to each other: BLAKE3.

Every fast-lane chunk (a descriptor's `chunks`, hashed by a source, checked by a receiver as
the bytes arrive, re-checked on resume and in the end game's scratch copy) and every entry of a
streamed install (a listing's `digest`) is hashed here and nowhere else, so the choice lives in
one place and the wire's pattern for it (`DIGEST_PATTERN`) with it.

Why BLAKE3 and not SHA-256: the receiver checks every byte, so the digest is on the transfer's
critical path, and SHA-256 was its ceiling (1.2-1.6 GiB/s per core on the project machine,
BLAKE3 2.4-5.8 with the same core). The `blake3` package is the BLAKE3 authors' Rust binding; its
`update` releases the GIL, so the lane's threads hash on every core. These digests are only ever
compared between peers (voted descriptors and listings); where a file's identity is compared with
the outside world (the lab's manifests, a peer's key fingerprint) SHA-256 stays.

Changing the digest is a protocol change: `protocol.PROTOCOL_VERSION` must move with it, so
that peers hashing differently refuse each other at the Hello instead of mis-verifying.
"""

from __future__ import annotations

from typing import Final

import blake3

NAME: Final = "BLAKE3"
HEX_LENGTH: Final = 64  # BLAKE3's default 32-byte output, as lowercase hex
DIGEST_PATTERN: Final = rf"^[0-9a-f]{{{HEX_LENGTH}}}\Z"

Hasher = blake3.blake3


def hasher(*, parallel: bool = False) -> Hasher:
    """A fresh content hasher; `parallel` lets one large update use every core (a source
    describing a game on its own thread)."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO if parallel else 1)


def digest(data: bytes | memoryview) -> str:
    """The hex digest of `data` in one go."""
    return blake3.blake3(data).hexdigest()


EMPTY: Final = digest(b"")  # a folder entry's, and an empty file's
