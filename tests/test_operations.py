"""The operation table and lifecycle: the tables without an event loop, then each outcome live.

Every outcome must end the operation exactly once, with the terminal event the table names:
success, the peer's refusal, any other exception (code `internal`), a user cancel (after its
cleanup) and a shutdown (told apart from a cancel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import structlog

from peer.errors import PeerError
from peer.events import EVENTS
from peer.operations import (
    CANCELLED,
    DOWNLOADING,
    FAILED,
    INSTALLING,
    INTERRUPTIBLE,
    NEXT,
    SHUTDOWN,
    STREAM_INSTALLING,
    SUCCEEDED,
    TERMINAL,
    UNINSTALLING,
    Kind,
    Operation,
    Operations,
    Outcome,
    check_advance,
    check_begin,
    check_cancel,
    terminal_fields,
)

# -- the tables, pure -----------------------------------------------------------------------


def test_every_kind_ends_in_a_declared_event_for_success_and_failure() -> None:
    for kind in Kind:
        for outcome in (SUCCEEDED, FAILED):
            assert TERMINAL[(kind, outcome)] in EVENTS


def test_interruptible_kinds_name_their_cancel_and_shutdown_events() -> None:
    assert {DOWNLOADING, STREAM_INSTALLING} == INTERRUPTIBLE
    for kind in INTERRUPTIBLE:
        assert TERMINAL[(kind, CANCELLED)] == "download-cancelled"
        assert TERMINAL[(kind, SHUTDOWN)] == "download-failed", "a shutdown is no cancel"
    for kind in set(Kind) - INTERRUPTIBLE:
        assert (kind, CANCELLED) not in TERMINAL and (kind, SHUTDOWN) not in TERMINAL


def test_terminal_events_belong_to_their_kind() -> None:
    prefix = {
        DOWNLOADING: "download-",
        STREAM_INSTALLING: "download-",  # its transfer is reported as a download's
        INSTALLING: "install-",
        UNINSTALLING: "uninstall-",
    }
    for (kind, _), event in TERMINAL.items():
        assert event.startswith(prefix[kind]), (kind, event)


def test_only_a_transfer_turns_into_an_install() -> None:
    check_advance(DOWNLOADING, INSTALLING)
    check_advance(STREAM_INSTALLING, INSTALLING)
    for current in Kind:
        for new in Kind:
            if new not in NEXT[current]:
                with pytest.raises(ValueError):
                    check_advance(current, new)


def test_single_flight() -> None:
    check_begin({"other": DOWNLOADING}, "bfbc2")
    for kind in Kind:
        with pytest.raises(PeerError) as err:
            check_begin({"bfbc2": kind}, "bfbc2")
        assert err.value.code == "operation-in-progress"
        assert err.value.message == "operation already in progress for game bfbc2"


def test_only_a_running_transfer_can_be_cancelled() -> None:
    check_cancel({"bfbc2": DOWNLOADING}, "bfbc2")
    check_cancel({"bfbc2": STREAM_INSTALLING}, "bfbc2")
    for table in ({}, {"bfbc2": INSTALLING}, {"bfbc2": UNINSTALLING}, {"x": DOWNLOADING}):
        with pytest.raises(PeerError) as err:
            check_cancel(table, "bfbc2")
        assert err.value.code == "not-downloading"
        assert err.value.message == "no download of bfbc2 to cancel"


def test_terminal_fields_tell_the_outcomes_apart() -> None:
    assert terminal_fields(SUCCEEDED, None) == {}
    assert terminal_fields(CANCELLED, None) == {}
    assert terminal_fields(SHUTDOWN, None) == {
        "code": "shutdown",
        "reason": "the peer is shutting down",
    }
    assert terminal_fields(FAILED, PeerError("no-peers", "gone")) == {
        "code": "no-peers",
        "reason": "gone",
    }
    crash = terminal_fields(FAILED, KeyError("x"))
    assert crash["code"] == "internal" and "KeyError" in crash["reason"]


# -- the lifecycle, live --------------------------------------------------------------------


class Recorder:
    """An Operations with its events and table-change calls recorded in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.tables: list[dict[str, str]] = []
        self.ops = Operations(self.emit, self.changed, self.spawn)

    def emit(self, event: str, /, **fields: Any) -> None:
        self.log.append((event, fields))

    def changed(self) -> None:
        self.tables.append({g: k.value for g, k in self.ops.table.items()})

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return asyncio.ensure_future(coro)

    def events(self) -> list[str]:
        return [e for e, _ in self.log if e != "active-operations-changed"]

    def last(self) -> dict[str, Any]:
        return self.log[-1][1]


def job_returning(fields: Mapping[str, Any]) -> Any:
    async def job(op: Operation) -> Mapping[str, Any]:
        return fields

    return job


def job_raising(exc: BaseException) -> Any:
    async def job(op: Operation) -> Mapping[str, Any]:
        raise exc

    return job


def job_waiting(gate: asyncio.Event) -> Any:
    async def job(op: Operation) -> Mapping[str, Any]:
        await gate.wait()
        return {}

    return job


async def finish(rec: Recorder) -> None:
    while rec.ops.table:
        await asyncio.sleep(0)


async def test_success_emits_its_finished_event_after_the_table_is_clear() -> None:
    rec = Recorder()
    rec.ops.start("bfbc2", UNINSTALLING, job_returning({}))
    assert rec.ops.table == {"bfbc2": UNINSTALLING}
    await finish(rec)
    assert rec.events() == ["uninstall-finished"]
    assert rec.tables == [{"bfbc2": "Uninstalling"}, {}], "the table is clear before the event"
    assert rec.log[-2] == ("active-operations-changed", {"operations": []})


async def test_a_refusal_ends_with_its_code() -> None:
    rec = Recorder()
    rec.ops.start("bfbc2", INSTALLING, job_raising(PeerError("install-failed", "disk")))
    await finish(rec)
    assert rec.events() == ["install-failed"]
    assert rec.last() == {"game_id": "bfbc2", "code": "install-failed", "reason": "disk"}


@pytest.mark.parametrize("kind", list(Kind))
async def test_any_other_exception_ends_with_internal(kind: Kind) -> None:
    rec = Recorder()
    rec.ops.start("bfbc2", kind, job_raising(PermissionError(13, "read-only")))
    await finish(rec)
    assert rec.events() == [TERMINAL[(kind, FAILED)]]
    assert rec.last()["code"] == "internal" and "PermissionError" in rec.last()["reason"]
    assert not rec.ops.table, "the game is not left in the table"


async def test_a_second_operation_on_the_same_game_is_refused() -> None:
    rec = Recorder()
    gate = asyncio.Event()
    rec.ops.start("bfbc2", DOWNLOADING, job_waiting(gate))
    with pytest.raises(PeerError):
        rec.ops.start("bfbc2", INSTALLING, job_returning({}))
    rec.ops.start("cnc4", INSTALLING, job_returning({}))
    gate.set()
    await finish(rec)
    assert sorted(rec.events()) == ["download-finished", "install-finished"]


async def test_advance_ends_the_download_and_keeps_the_game_in_the_table() -> None:
    rec = Recorder()
    seen: list[dict[str, str]] = []

    async def job(op: Operation) -> Mapping[str, Any]:
        op.advance(INSTALLING, bytes=5)
        seen.append({g: k.value for g, k in rec.ops.table.items()})
        return {}

    rec.ops.start("bfbc2", DOWNLOADING, job)
    await finish(rec)
    assert rec.events() == ["download-finished", "install-finished"]
    assert seen == [{"bfbc2": "Installing"}]
    assert rec.log[[e for e, _ in rec.log].index("download-finished")][1] == {
        "game_id": "bfbc2",
        "bytes": 5,
    }


async def test_a_failure_after_advance_is_an_install_failure() -> None:
    rec = Recorder()

    async def job(op: Operation) -> Mapping[str, Any]:
        op.advance(INSTALLING)
        raise OSError("unpack")

    rec.ops.start("bfbc2", DOWNLOADING, job)
    await finish(rec)
    assert rec.events() == ["download-finished", "install-failed"]


async def test_cancel_answers_after_the_cleanup_and_never_fails() -> None:
    rec = Recorder()
    undone: list[str] = []
    rec.ops.start(
        "bfbc2", DOWNLOADING, job_waiting(asyncio.Event()), undo=lambda: undone.append("x")
    )
    await asyncio.sleep(0)
    await rec.ops.cancel("bfbc2")
    assert undone == ["x"], "the cleanup ran before cancel returned"
    assert rec.events() == ["download-cancelled"]
    assert not rec.ops.table


async def test_two_cancels_end_the_operation_once() -> None:
    rec = Recorder()
    rec.ops.start("bfbc2", DOWNLOADING, job_waiting(asyncio.Event()), undo=lambda: None)
    await asyncio.sleep(0)
    await asyncio.gather(rec.ops.cancel("bfbc2"), rec.ops.cancel("bfbc2"))
    assert rec.events() == ["download-cancelled"]


async def test_an_install_cannot_be_cancelled() -> None:
    rec = Recorder()
    gate = asyncio.Event()
    rec.ops.start("bfbc2", INSTALLING, job_waiting(gate))
    with pytest.raises(PeerError) as err:
        await rec.ops.cancel("bfbc2")
    assert err.value.code == "not-downloading"
    gate.set()
    await finish(rec)
    assert rec.events() == ["install-finished"]


async def test_shutdown_interrupts_downloads_without_their_cleanup_and_lets_installs_end() -> None:
    rec = Recorder()
    undone: list[str] = []
    gate = asyncio.Event()
    rec.ops.start(
        "bfbc2", DOWNLOADING, job_waiting(asyncio.Event()), undo=lambda: undone.append("x")
    )
    rec.ops.start("cnc4", INSTALLING, job_waiting(gate))
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(rec.ops.shutdown())
    for _ in range(5):
        await asyncio.sleep(0)  # let shutdown run as far as it can
    assert not stopping.done(), "shutdown waits for the install"
    gate.set()
    await stopping
    assert sorted(rec.events()) == ["download-failed", "install-finished"]
    failed = next(f for e, f in rec.log if e == "download-failed")
    assert failed["code"] == "shutdown"
    assert undone == [], "a shutdown keeps the partial files; only a user cancel removes them"


def test_every_outcome_ends_some_kind_with_an_event() -> None:
    """An outcome added to the enum without a row in TERMINAL would end no operation."""
    assert {outcome for _, outcome in TERMINAL} == set(Outcome)


async def test_the_table_is_reported_game_by_game() -> None:
    rec = Recorder()
    gate = asyncio.Event()
    rec.ops.start("cnc4", INSTALLING, job_waiting(gate))
    rec.ops.start("bfbc2", DOWNLOADING, job_waiting(gate))
    changes = [f["operations"] for e, f in rec.log if e == "active-operations-changed"]
    assert changes[-1] == [
        {"game_id": "bfbc2", "kind": "Downloading"},
        {"game_id": "cnc4", "kind": "Installing"},
    ]
    gate.set()
    await finish(rec)


async def test_a_crash_is_logged_with_its_game_and_kind() -> None:
    rec = Recorder()
    with structlog.testing.capture_logs() as logs:
        rec.ops.start("bfbc2", INSTALLING, job_raising(KeyError("x")))
        await finish(rec)
    crashed = [e for e in logs if e["event"] == "operation crashed"]
    assert [(e["game_id"], e["kind"], e["log_level"]) for e in crashed] == [
        ("bfbc2", "Installing", "error")
    ]


@pytest.mark.parametrize(
    ("kind", "event"), [(DOWNLOADING, "download-failed"), (INSTALLING, "install-failed")]
)
async def test_a_task_cancelled_from_outside_ends_as_a_shutdown(kind: Kind, event: str) -> None:
    """Cancelled by its owner (the node's tasks torn down), not by cancel or shutdown."""
    rec = Recorder()
    tasks: list[asyncio.Task[Any]] = []

    def spawn(coro: Any, name: str) -> asyncio.Task[Any]:
        tasks.append(asyncio.ensure_future(coro))
        return tasks[-1]

    rec.ops = Operations(rec.emit, rec.changed, spawn)
    rec.ops.start("bfbc2", kind, job_waiting(asyncio.Event()))
    await asyncio.sleep(0)
    tasks[0].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert rec.events() == [event]
    assert rec.last() == {
        "game_id": "bfbc2",
        "code": "shutdown",
        "reason": "the peer is shutting down",
    }


async def test_a_cancelled_game_can_be_downloaded_and_cancelled_again() -> None:
    rec = Recorder()
    for _ in range(2):
        rec.ops.start("bfbc2", DOWNLOADING, job_waiting(asyncio.Event()))
        await asyncio.sleep(0)
        async with asyncio.timeout(2):
            await rec.ops.cancel("bfbc2")
    assert rec.events() == ["download-cancelled", "download-cancelled"]
    assert not rec.ops.table
