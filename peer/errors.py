"""One exception type for every refusal the peer reports to its user or to a remote peer.

A stable `code` lets scripts and tests branch on the reason without parsing prose.
"""

from __future__ import annotations


class PeerError(Exception):
    """A refusal with a stable machine-readable code and a human message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"PeerError({self.code!r}, {self.message!r})"
