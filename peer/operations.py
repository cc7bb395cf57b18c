"""The single-flight operation table, and the one place every operation ends.

In the style of h11's `_state.py`: the kinds of operation, what each may turn into, which ones a
cancel may interrupt, and the literal terminal event of every (kind, outcome) are tables at the
top of this file. `Operations.run()` is the only code that ends an operation, whatever happened:
success, the peer's own refusal, any other exception (code `internal`), a user's cancel or the
peer shutting down. So no outcome can leave a game stuck in the table without a terminal event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

import structlog

from peer.blocking import in_thread
from peer.errors import PeerError
from peer.events import Event
from peer.output import Emit

log = structlog.get_logger("operations")


class Kind(StrEnum):
    DOWNLOADING = "Downloading"
    STREAM_INSTALLING = "StreamInstalling"  # extracting a source's archives into staging
    INSTALLING = "Installing"
    UNINSTALLING = "Uninstalling"


class Outcome(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the user asked (`cancel-download`)
    SHUTDOWN = "shutdown"  # the peer is stopping


DOWNLOADING, STREAM_INSTALLING = Kind.DOWNLOADING, Kind.STREAM_INSTALLING
INSTALLING, UNINSTALLING = Kind.INSTALLING, Kind.UNINSTALLING
SUCCEEDED, FAILED, CANCELLED, SHUTDOWN = (
    Outcome.SUCCEEDED,
    Outcome.FAILED,
    Outcome.CANCELLED,
    Outcome.SHUTDOWN,
)

# What an operation may turn into when its current phase succeeds: a download with install=true
# becomes an install without leaving the table, so no other command can slip in between.
NEXT: Mapping[Kind, frozenset[Kind]] = {
    DOWNLOADING: frozenset({INSTALLING}),
    STREAM_INSTALLING: frozenset({INSTALLING}),
    INSTALLING: frozenset(),
    UNINSTALLING: frozenset(),
}

# Which kinds a cancel or a shutdown interrupts. Installs and uninstalls are filesystem
# transactions: they are left to finish (and a crash in the middle is recovered at start).
INTERRUPTIBLE: frozenset[Kind] = frozenset({DOWNLOADING, STREAM_INSTALLING})

TERMINAL: Mapping[tuple[Kind, Outcome], Event] = {
    (DOWNLOADING, SUCCEEDED): "download-finished",
    (DOWNLOADING, FAILED): "download-failed",
    (DOWNLOADING, CANCELLED): "download-cancelled",
    (DOWNLOADING, SHUTDOWN): "download-failed",
    # A streamed install reports its transfer as a download does (upstream's events).
    (STREAM_INSTALLING, SUCCEEDED): "download-finished",
    (STREAM_INSTALLING, FAILED): "download-failed",
    (STREAM_INSTALLING, CANCELLED): "download-cancelled",
    (STREAM_INSTALLING, SHUTDOWN): "download-failed",
    (INSTALLING, SUCCEEDED): "install-finished",
    (INSTALLING, FAILED): "install-failed",
    (UNINSTALLING, SUCCEEDED): "uninstall-finished",
    (UNINSTALLING, FAILED): "uninstall-failed",
}


def check_begin(table: Mapping[str, Kind], game_id: str) -> None:
    """Single flight: one operation per game at a time."""
    if game_id in table:
        raise PeerError(
            "operation-in-progress", f"operation already in progress for game {game_id}"
        )


def check_advance(current: Kind, new: Kind) -> None:
    if new not in NEXT[current]:
        raise ValueError(f"an operation {current.value} cannot become {new.value}")


def check_cancel(table: Mapping[str, Kind], game_id: str) -> None:
    kind = table.get(game_id)
    if kind is None or kind not in INTERRUPTIBLE:
        raise PeerError("not-downloading", f"no download of {game_id} to cancel")


def terminal_fields(outcome: Outcome, error: BaseException | None) -> dict[str, Any]:
    """The fields a terminal event carries besides `game_id` and the job's own figures."""
    if outcome is SHUTDOWN:
        return {"code": "shutdown", "reason": "the peer is shutting down"}
    if outcome is not FAILED:
        return {}
    if isinstance(error, PeerError):
        return {"code": error.code, "reason": error.message}
    return {"code": "internal", "reason": f"{type(error).__name__}: {error}"}


Job = Callable[["Operation"], Awaitable[Mapping[str, Any]]]


@dataclass
class Operation:
    """One running operation. Its job may `advance` it to the next kind (see NEXT)."""

    game_id: str
    kind: Kind
    undo: Callable[[], None] | None  # run (in a thread) after a user's cancel, before the end
    _owner: Operations = field(repr=False)

    def advance(self, kind: Kind, **fields: Any) -> None:
        """End the current phase with success (its terminal event) and start `kind`."""
        self._owner.advance(self, kind, **fields)


class Operations:
    """The table of running operations, keyed by game ID.

    `changed` is called whenever the table changes, before the event that reports it, so the
    node can rescan and re-advertise (a game with an operation is never advertised).
    """

    def __init__(
        self,
        emit: Emit,
        changed: Callable[[], None],
        spawn: Callable[[Awaitable[Any], str], asyncio.Task[Any]],
    ) -> None:
        self._emit = emit
        self._changed = changed
        self._spawn = spawn
        self._table: dict[str, Kind] = {}
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._interrupts: dict[str, Outcome] = {}

    @property
    def table(self) -> Mapping[str, Kind]:
        return self._table

    def active(self) -> frozenset[str]:
        return frozenset(self._table)

    def listing(self) -> list[dict[str, str]]:
        return [{"game_id": g, "kind": k.value} for g, k in sorted(self._table.items())]

    def start(
        self, game_id: str, kind: Kind, job: Job, undo: Callable[[], None] | None = None
    ) -> Operation:
        """Enter `game_id` in the table and run `job` for it; refuses a second operation."""
        check_begin(self._table, game_id)
        op = Operation(game_id, kind, undo, self)
        self._table[game_id] = kind
        self._report()
        self._tasks[game_id] = self._spawn(self.run(op, job), f"{kind.value}-{game_id}")
        return op

    def advance(self, op: Operation, kind: Kind, **fields: Any) -> None:
        check_advance(op.kind, kind)
        finished = TERMINAL[(op.kind, SUCCEEDED)]
        op.kind = self._table[op.game_id] = kind
        self._report()
        self._emit(finished, game_id=op.game_id, **fields)

    async def run(self, op: Operation, job: Job) -> None:
        """Run `job` and end `op` exactly once, with the terminal event its outcome calls for."""
        error: BaseException | None = None
        fields: Mapping[str, Any] = {}
        try:
            fields = await job(op)
            outcome = SUCCEEDED
        except asyncio.CancelledError:
            outcome = self._interrupts.get(op.game_id, SHUTDOWN)
            if outcome is CANCELLED and op.undo is not None:
                await in_thread(op.undo)
        except PeerError as exc:
            outcome, error = FAILED, exc
        except Exception as exc:
            log.exception("operation crashed", game_id=op.game_id, kind=op.kind.value)
            outcome, error = FAILED, exc
        finally:
            self._interrupts.pop(op.game_id, None)
            self._tasks.pop(op.game_id, None)
            self._table.pop(op.game_id, None)
        self._report()
        event = TERMINAL.get((op.kind, outcome), TERMINAL[(op.kind, FAILED)])
        self._emit(event, game_id=op.game_id, **fields, **terminal_fields(outcome, error))

    async def shutdown(self) -> None:
        """Interrupt what may be interrupted, and let the transactions finish."""
        for game_id, kind in list(self._table.items()):
            if kind in INTERRUPTIBLE:
                self._interrupt(game_id, SHUTDOWN)
        if self._tasks:
            await asyncio.wait(set(self._tasks.values()))

    async def cancel(self, game_id: str) -> None:
        """A user's cancel: returns once the operation has ended and cleaned up."""
        check_cancel(self._table, game_id)
        await asyncio.wait({self._interrupt(game_id, CANCELLED)})

    def _interrupt(self, game_id: str, outcome: Outcome) -> asyncio.Task[Any]:
        """Cancel the job once; a second interrupt only waits (its cleanup must not be cut).

        The cancel is queued behind the task's first step: a task cancelled before it ever ran
        never enters `run`, so the operation would stay in the table with no terminal event (a
        `cancel-download` sent right after `download`). The loop runs ready callbacks in order,
        and the task's first step was queued when it was created.
        """
        task = self._tasks[game_id]
        if game_id not in self._interrupts:
            self._interrupts[game_id] = outcome
            asyncio.get_running_loop().call_soon(task.cancel)
        return task

    def _report(self) -> None:
        self._changed()
        self._emit("active-operations-changed", operations=self.listing())
