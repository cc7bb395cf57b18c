"""Every event name the peer writes to stdout, declared once as a literal.

Grepping an event's name finds it here and at every place that emits it, and `Event` lets
mypy refuse a misspelt one. The README
lists the same names; tests/test_readme.py checks the two lists match exactly.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Event = Literal[
    "cli-started",
    "cli-stopped",
    "local-peer-ready",
    "local-library-changed",
    "active-operations-changed",
    "peer-discovered",
    "peer-connected",
    "peer-library-changed",
    "peer-lost",
    "peer-refused",
    "duplicate-identity",
    "no-peers-have-game",
    "got-game-files",
    "download-begin",
    "download-chunk-finished",
    "download-chunk-failed",
    "download-chunk-duplicated",
    "download-source-skipped",
    "download-source-excluded",
    "download-progress",
    "download-cancelled",
    "download-finished",
    "download-failed",
    "install-begin",
    "install-finished",
    "install-failed",
    "uninstall-finished",
    "uninstall-failed",
    "install-recovered",
]

EVENTS: Final[frozenset[str]] = frozenset(get_args(Event))
