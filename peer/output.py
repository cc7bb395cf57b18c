"""The only writer of stdout: one JSON object per line, flushed, nothing else ever.

Records are `event`, `result` or `error`, each with a `ts`, so a driver can parse every line.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, Protocol, TextIO

from peer.events import Event


class Emit(Protocol):
    """How the parts of a peer report events: they get this callable, never the writer."""

    def __call__(self, event: Event, /, **fields: Any) -> None: ...


def _ts() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Output:
    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def _write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self._stream.flush()

    def event(self, name: Event, /, **fields: Any) -> None:
        self._write({"type": "event", "ts": _ts(), "event": name, **fields})

    def result(self, cmd: str | None, request_id: Any, data: Any) -> None:
        self._write({"type": "result", "ts": _ts(), "cmd": cmd, "id": request_id, "data": data})

    def error(self, cmd: str | None, request_id: Any, code: str, message: str) -> None:
        self._write(
            {
                "type": "error",
                "ts": _ts(),
                "cmd": cmd,
                "id": request_id,
                "code": code,
                "message": message,
            }
        )
