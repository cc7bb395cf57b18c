"""One exception type for every refusal the peer reports, and every code it may carry.

A stable `code` lets scripts and tests branch on the reason without parsing prose. The codes
are a closed set, declared here as a `Literal`, so mypy refuses a misspelt one and the README's
list can be checked against this one (tests/test_readme.py).
"""

from __future__ import annotations

from typing import Literal, get_args

CommandCode = Literal[
    # a stdin line refused before it ran
    "bad-json",
    "bad-command",
    "unknown-command",
    "unknown-field",
    "missing-field",
    "bad-field",
    "line-too-long",
    # a command refused by the peer's state
    "bad-game-id",
    "bad-path",
    "bad-address",
    "unknown-game",
    "no-peers",
    "operation-in-progress",
    "self-connect",
    "connect-failed",
    "identity-mismatch",
    "duplicate-identity",
    "not-downloaded",
    "not-installed",
    "not-downloading",
    "timeout",
    "internal",
]

OutcomeCode = Literal[
    # why a source was skipped or excluded, or an operation failed (in events' `code`)
    "already-installed",
    "ambiguous-metadata",
    "bad-metadata",
    "bad-chunk",
    "busy",
    "bad-message",
    "incompatible",
    "install-failed",
    "uninstall-failed",
    "not-introduced",
    "not-servable",
    "peer-unreachable",
    "remote-error",
    "shutdown",
    "sources-lost",
    "unauthorised",
    "write-failed",
    # the peer refused to start (one error record, then a non-zero exit)
    "bad-argument",
    "bad-catalog",
    "bad-state-dir",
    "dir-in-use",
]

ErrorCode = CommandCode | OutcomeCode
COMMAND_CODES: frozenset[str] = frozenset(get_args(CommandCode))
OUTCOME_CODES: frozenset[str] = frozenset(get_args(OutcomeCode))
ERROR_CODES: frozenset[str] = COMMAND_CODES | OUTCOME_CODES


class PeerError(Exception):
    """A refusal with a stable machine-readable code and a human message."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def __repr__(self) -> str:
        return f"PeerError({self.code!r}, {self.message!r})"
