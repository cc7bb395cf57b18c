"""Waiting on a peer: what it says as it says it, and every wait over that, each with a timeout.

As testcontainers keeps its waits (`waiting_utils`) apart from the container, the lab keeps them
apart from the handle's commands and files: `Transcript` is what one peer has said (its JSON
records, stderr lines and any stray stdout) and what the lab did to it (`actions`), on one clock,
and `PeerHandle` (harness/peer.py) is a transcript that also sends commands and touches files.

Every failed wait explains itself with the peer's last records and its stderr tail. Records are
kept from the peer's first line, so "no event X happened" can be asserted over a whole window,
not only the tail seen after some point. A wait that times out is itself an action, so the run
report can draw it beside what the peer said.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

Record = dict[str, Any]
Where = Mapping[str, Any] | Callable[[Record], bool] | None

DEFAULT_TIMEOUT = 60.0


def _matches(record: Record, where: Where) -> bool:
    if where is None:
        return True
    if callable(where):
        return bool(where(record))
    return all(record.get(k) == v for k, v in where.items())


def _is_event(record: Record, names: Collection[str] | None, where: Where) -> bool:
    """Whether `record` is an event named one of `names` (any, for None) matching `where`."""
    return (
        record.get("type") == "event"
        and (names is None or record.get("event") in names)
        and _matches(record, where)
    )


class Transcript:
    """One peer's records, stderr and the lab's actions on it, and the waits over them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.addr = ""
        self.records: list[Record] = []
        self.stderr: list[str] = []
        self.garbage: list[str] = []  # stdout lines that were not JSON records (must stay empty)
        self.actions: list[Record] = []  # what the lab did to this peer, for the timeline
        self._cond = threading.Condition()

    # -- what arrives ----------------------------------------------------------------------------

    def _sink(self, stream: str, line: str) -> None:
        with self._cond:
            if stream == "stderr":
                self.stderr.append(line)
            else:
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError
                except ValueError:
                    self.garbage.append(line)
                else:
                    record["_t"] = time.monotonic()
                    self.records.append(record)
            self._cond.notify_all()

    def _act(self, action: str, **fields: Any) -> None:
        """Record one thing the lab did to this peer, timed on the records' clock."""
        with self._cond:
            self.actions.append({"_t": time.monotonic(), "action": action, **fields})

    def mark(self) -> int:
        """A cursor: the number of records seen so far."""
        with self._cond:
            return len(self.records)

    def index(self, record: Record) -> int:
        with self._cond:
            return next(i for i, r in enumerate(self.records) if r is record)

    def context(self, last: int = 25) -> str:
        """The peer's recent records and stderr, for failure messages."""
        with self._cond:
            recs = [
                json.dumps({k: v for k, v in r.items() if k != "_t"})[:400]
                for r in self.records[-last:]
            ]
            err = self.stderr[-15:]
            garbage = self.garbage[-5:]
        parts = [f"--- peer {self.name} ({self.addr}) last {len(recs)} records:", *recs]
        parts += [f"--- stderr tail ({len(err)} lines):", *err]
        if garbage:
            parts += ["--- non-JSON stdout:", *garbage]
        return "\n".join(parts)

    # -- waits ---------------------------------------------------------------------------------

    def _wait_for(self, find: Callable[[], Record | None], what: str, timeout: float) -> Record:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._act("wait-timed-out", what=what, timeout_s=timeout)
                    raise AssertionError(
                        f"peer {self.name}: timed out after {timeout}s waiting for {what}\n"
                        + self.context()
                    )
                self._cond.wait(remaining)

    def wait_for_record(
        self, where: Callable[[Record], bool], since: int, what: str, timeout: float
    ) -> Record:
        """The first record from `since` on for which `where` holds; fails after `timeout`."""

        def find() -> Record | None:
            return next((r for r in self.records[since:] if where(r)), None)

        return self._wait_for(find, what, timeout)

    def expect(
        self, event: str, where: Where = None, since: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> Record:
        """Wait for an event named `event` (matching `where`) at or after cursor `since`."""

        def find() -> Record | None:
            return next((r for r in self.records[since:] if _is_event(r, (event,), where)), None)

        return self._wait_for(find, f"event {event} where {where}", timeout)

    def expect_sequence(
        self, *events: str, where: Where = None, since: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> list[Record]:
        """Wait for `events` to appear in this order (other events may come between)."""
        found = []
        cursor = since
        for name in events:
            record = self.expect(name, where=where, since=cursor, timeout=timeout)
            found.append(record)
            cursor = self.records.index(record) + 1
        return found

    def expect_one_of(
        self,
        names: tuple[str, ...],
        where: Where = None,
        since: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Record:
        def find() -> Record | None:
            return next((r for r in self.records[since:] if _is_event(r, names, where)), None)

        return self._wait_for(find, f"one of {names} where {where}", timeout)

    def expect_log(
        self, event: str, timeout: float = DEFAULT_TIMEOUT, since: int = 0, **where: Any
    ) -> Record:
        """Wait for a structlog line on the peer's stderr (its `event` and fields `where`), from
        stderr line `since` on."""
        return self._wait_for(
            lambda: self._log_line(event, since, where), f"log line {event!r} {where}", timeout
        )

    def log_line_or(
        self,
        log_event: str,
        log_since: int,
        names: Collection[str],
        since: int,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Record:
        """Whichever comes first: the stderr line `log_event` (from stderr line `log_since`) or
        an event named one of `names` (from record `since`); that line or record."""

        def find() -> Record | None:
            line = self._log_line(log_event, log_since, {})
            if line is not None:
                return line
            return next((r for r in self.records[since:] if _is_event(r, names, None)), None)

        return self._wait_for(find, f"log line {log_event!r} or one of {names}", timeout)

    def _log_line(self, event: str, since: int, where: Mapping[str, Any]) -> Record | None:
        for line in self.stderr[since:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(record, dict)
                and record.get("event") == event
                and all(record.get(k) == v for k, v in where.items())
            ):
                return record
        return None

    # -- over a window --------------------------------------------------------------------------

    def events(
        self, name: str | None = None, since: int = 0, until: int | None = None, where: Where = None
    ) -> list[Record]:
        with self._cond:
            window = self.records[since:until]
        return [r for r in window if _is_event(r, None if name is None else (name,), where)]

    def no_event_since(
        self, event: str, since: int = 0, until: int | None = None, where: Where = None
    ) -> None:
        """Assert that `event` never happened in records[since:until] (the whole window)."""
        hits = self.events(event, since=since, until=until, where=where)
        assert not hits, (
            f"peer {self.name}: unexpected {event} in records[{since}:{until}]: {hits[:3]}\n"
            + self.context()
        )

    def stays_without(self, event: str, seconds: float, where: Where = None) -> None:
        """Watch the peer for `seconds` and fail the moment `event` appears: for "X does not
        happen while ...", where the window itself is the claim (not a sleep before a look)."""
        since = self.mark()
        deadline = time.monotonic() + seconds
        self._act("watch", event=event, seconds=seconds)
        with self._cond:
            while True:
                hits = [r for r in self.records[since:] if _is_event(r, (event,), where)]
                assert not hits, (
                    f"peer {self.name}: {event} within the {seconds}s watched: {hits[:2]}\n"
                    + self.context()
                )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)
