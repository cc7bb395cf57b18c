"""How a peer ended, judged: the lab's checker for every peer a scenario started.

A peer stopped by `shutdown` or SIGTERM must exit 0; only a peer the lab SIGKILLed may end with
137. Whatever ended it, its stderr must hold no Python traceback, no "Fatal Python error" and no
error-level log record the scenario did not say it expects. Pure: the handle gathers the facts.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

KILLED = 137  # 128 + SIGKILL, as Docker and a shell report it
FATAL_MARKS = (
    "Traceback (most recent call last)",
    "Fatal Python error",
    "was never awaited",  # a coroutine dropped on the floor: work silently not done
)
ERROR_LEVELS = frozenset({"error", "critical", "exception", "fatal"})


@dataclass(frozen=True)
class Ending:
    """One run of a peer process, from start to exit."""

    status: int | None  # None: still running after SIGTERM's grace period
    killed_by_lab: bool  # the lab sent SIGKILL (kill, restart of a live peer)


def ending_problems(ending: Ending) -> list[str]:
    if ending.status is None:
        return ["still running after SIGTERM's grace period (then SIGKILLed)"]
    if ending.killed_by_lab:
        return [] if ending.status in (0, KILLED) else [f"exit status {ending.status} on kill"]
    if ending.status != 0:
        return [f"exit status {ending.status} after shutdown or SIGTERM (want 0)"]
    return []


def stderr_problems(lines: Sequence[str], expected_errors: Collection[str] = ()) -> list[str]:
    """Tracebacks, fatal errors and error-level structlog records not in `expected_errors`."""
    problems = []
    for number, line in enumerate(lines, 1):
        if any(mark in line for mark in FATAL_MARKS):
            problems.append(f"stderr line {number}: {line[:200]}")
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        level, event = str(record.get("level", "")).lower(), str(record.get("event", ""))
        if level in ERROR_LEVELS and event not in expected_errors:
            problems.append(f"stderr line {number}: unexpected {level} log {event!r}")
    return problems
