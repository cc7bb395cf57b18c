"""Parsing one stdin line into a validated command (pure; no I/O).

The parser is generic: which commands exist, and their fields, is declared in `console.py`
next to each command's handler. Unknown fields are refused rather than ignored: a typo such as
`"instal": false` must not silently start an install the user tried to turn off.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from peer.errors import CommandCode, PeerError

# A newline in a user name would inject lines into the ini files `play` stamps.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Field:
    kind: type
    default: Any = None
    required: bool = True


def optional(kind: type, default: Any) -> Field:
    return Field(kind, default, required=False)


Specs = Mapping[str, Mapping[str, Field]]


@dataclass(frozen=True)
class Command:
    name: str
    request_id: Any
    args: dict[str, Any] = field(default_factory=dict)


class CommandError(PeerError):
    """A refused line; carries whatever `cmd` and `id` could be read, to echo them back."""

    def __init__(
        self, code: CommandCode, message: str, cmd: str | None = None, request_id: Any = None
    ) -> None:
        super().__init__(code, message)
        self.cmd = cmd
        self.request_id = request_id


def _check(name: str, value: Any, spec: Field, cmd: str, request_id: Any) -> Any:
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, spec.kind) and not (spec.kind is not bool and isinstance(value, bool))
    if spec.kind is float and ok and not math.isfinite(value):
        ok = False
    if spec.kind is str and ok and (not value or len(value) > 4096 or _CONTROL.search(value)):
        raise CommandError(
            "bad-field",
            f"field {name!r} of {cmd} must be 1-4096 characters without control characters",
            cmd,
            request_id,
        )
    if not ok:
        raise CommandError(
            "bad-field",
            f"field {name!r} of {cmd} must be {spec.kind.__name__}, got {type(value).__name__}",
            cmd,
            request_id,
        )
    return value


def parse_command(line: str, specs: Specs) -> Command:
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError) as exc:  # ValueError: also integers past the digit cap
        raise CommandError("bad-json", f"line is not JSON we accept: {exc}") from None
    if not isinstance(raw, dict):
        raise CommandError("bad-command", "a command must be a JSON object")
    request_id = raw.get("id")
    if request_id is not None and not isinstance(request_id, str | int):
        raise CommandError("bad-field", "field 'id' must be a string or an integer")
    if isinstance(request_id, bool):
        raise CommandError("bad-field", "field 'id' must be a string or an integer")
    name = raw.get("cmd")
    if not isinstance(name, str):
        raise CommandError("bad-command", "missing string field 'cmd'", None, request_id)
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs))
        raise CommandError(
            "unknown-command", f"unknown command {name!r}; known: {known}", name, request_id
        )
    extra = sorted(set(raw) - set(spec) - {"cmd", "id"})
    if extra:
        raise CommandError("unknown-field", f"{name} does not take {extra}", name, request_id)
    args: dict[str, Any] = {}
    for key, fspec in spec.items():
        if key not in raw or raw[key] is None:
            if fspec.required:
                raise CommandError("missing-field", f"{name} needs field {key!r}", name, request_id)
            args[key] = fspec.default
        else:
            args[key] = _check(key, raw[key], fspec, name, request_id)
    return Command(name, request_id, args)
