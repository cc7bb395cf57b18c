"""A scenario's timeline JSON (written by `Lab.write_timeline`) decoded into what a page draws.

The file is read back from disk, so it is decoded defensively: anything malformed becomes an
empty or labelled value rather than an exception, and a page is still drawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LAB = "lab"
QUERIES = frozenset({"status", "list-games", "list-peers", "wait-peers"})
MAX_DETAIL = 600


@dataclass(frozen=True)
class Mark:
    """One record or lab action at time `t` (seconds since the lab's first)."""

    t: float
    kind: str  # the CSS class that colours it
    label: str  # drawn beside the mark when there is room
    detail: str  # the tooltip: the whole record, shortened
    target: str = ""  # for a lab action on one peer: that peer's lane


@dataclass(frozen=True)
class Lane:
    name: str
    addr: str
    marks: tuple[Mark, ...]
    stderr_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    t: float
    message: str
    wait_peer: str = ""  # the wait that timed out, when one did
    wait_what: str = ""
    wait_from: float = 0.0


@dataclass(frozen=True)
class Series:
    """Cumulative bytes one source delivered to one download, as (t, bytes) steps."""

    source: str
    points: tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class SourcePlot:
    client: str
    game_id: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class Band:
    """A nemesis fault from the moment it bit to its heal (or the end), over its peers' lanes."""

    start: float
    end: float
    kind: str
    label: str
    peers: tuple[str, ...]  # the lanes it covers; empty: every peer's


@dataclass(frozen=True)
class Timeline:
    scenario: str
    lanes: tuple[Lane, ...]  # the lab lane first, then one per peer
    failure: Failure | None = None
    plots: tuple[SourcePlot, ...] = ()
    end: float = 0.0
    problems: tuple[str, ...] = field(default_factory=tuple)
    bands: tuple[Band, ...] = ()


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _detail(record: dict[str, Any]) -> str:
    text = json.dumps({k: v for k, v in record.items() if k != "ts"}, default=str)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def event_kind(record: dict[str, Any]) -> str:
    """The colour family of one peer record."""
    if record.get("type") == "error":
        return "error"
    if record.get("type") != "event":
        return "result"
    name = _text(record.get("event"))
    if name.endswith("-failed") or name in ("download-source-excluded", "peer-lost"):
        return "bad"
    if name in ("download-progress", "download-chunk-finished"):
        return "progress"
    if name.startswith(("download-", "got-game", "no-peers")):
        return "transfer"
    if name.startswith(("install-", "uninstall-")):
        return "install"
    if name.startswith("peer-"):
        return "mesh"
    return "local"


def _peer_mark(record: dict[str, Any]) -> Mark:
    kind = event_kind(record)
    if kind == "result":
        label = f"← {_text(record.get('cmd'))}"
    elif kind == "error":
        label = f"✗ {_text(record.get('code'))}"
    else:
        label = _text(record.get("event"))
    return Mark(_num(record.get("t")), kind, label, _detail(record))


def _lab_mark(action: dict[str, Any], names: dict[str, str]) -> Mark:
    what = _text(action.get("action"))
    peer = _text(action.get("peer"))
    t = _num(action.get("t"))
    detail = _detail(action)
    if what == "command":
        cmd = _text(action.get("cmd"))
        args = _dict(action.get("args"))
        if cmd == "connect":
            addr = _text(args.get("addr"))
            label = f"{peer} connect → {names.get(addr, addr)}"
        else:
            arg = _text(args.get("game_id")) or _text(args.get("path"))
            label = f"{peer} {cmd} {arg}".rstrip()
        return Mark(t, "query" if cmd in QUERIES else "command", label, detail, peer)
    if what in ("write", "remove"):
        return Mark(t, "file", f"{peer} {what} {_text(action.get('path'))}", detail, peer)
    if what == "run":
        argv = _list(action.get("argv"))
        shown = " ".join(str(a) for a in argv[:3])[:48]
        return Mark(t, "file", f"{peer} $ {shown}", detail, peer)
    if what == "throttle":
        rate = _text(action.get("max_upload_rate"))
        mib = f"{int(rate) / 2**20:g} MiB/s" if rate.isdigit() else rate
        return Mark(t, "throttle", f"{peer} throttled {mib}", detail, peer)
    if what == "take-identity":
        return Mark(t, "file", f"{peer} takes {_text(action.get('of'))}'s identity", detail, peer)
    if what == "power-cut":  # a kill that also loses what was never fsynced (powerfs)
        return Mark(t, "kill", f"power cut {peer}", detail, peer)
    if what == "wait-timed-out":
        return Mark(t, "failed", f"{peer} wait timed out", detail, peer)
    if what == "failed":
        return Mark(t, "failed", "FAILED", detail)
    if what == "fault":
        return Mark(t, "fault", _fault_label(action), detail)
    if what == "heal":
        return Mark(t, "heal", f"heal {_text(action.get('kind'))}", detail)
    kind = what if what in ("start", "restart", "kill") else "command"
    return Mark(t, kind, f"{what} {peer}".strip(), detail, peer)


def _names_in(action: dict[str, Any], *keys: str) -> tuple[str, ...]:
    found: list[str] = []
    for key in keys:
        value = action.get(key)
        found += [str(v) for v in _list(value)] if isinstance(value, list) else []
        if isinstance(value, str):
            found.append(value)
    return tuple(found)


def _fault_label(action: dict[str, Any]) -> str:
    kind = _text(action.get("kind"))
    if kind in ("partition", "one-way-cut"):
        a, b = _names_in(action, "side_a"), _names_in(action, "side_b")
        return f"{kind} {','.join(a)} | {','.join(b)}"
    if kind == "loss":
        return f"loss {_num(action.get('percent')):g}% {','.join(_names_in(action, 'peers'))}"
    if kind == "rate-cap":
        return f"rate cap {_num(action.get('mbit')):g} Mbit/s {_text(action.get('peer'))}"
    return f"{kind} {_text(action.get('peer'))}".strip()


def _bands(actions: list[dict[str, Any]], end: float) -> list[Band]:
    """Each fault action paired with the heal of the same fault id (or the timeline's end)."""
    heals = {a.get("fault"): _num(a.get("t")) for a in actions if a.get("action") == "heal"}
    bands = []
    for a in actions:
        if a.get("action") != "fault":
            continue
        start = _num(a.get("t"))
        peers = _names_in(a, "side_a", "side_b", "peers", "peer")
        stop = heals.get(a.get("fault"), end)
        bands.append(Band(start, max(stop, start), _text(a.get("kind")), _fault_label(a), peers))
    return bands


def _failure(actions: list[dict[str, Any]]) -> Failure | None:
    failed = next((a for a in actions if a.get("action") == "failed"), None)
    waits = [a for a in actions if a.get("action") == "wait-timed-out"]
    if failed is None and not waits:
        return None
    wait = waits[0] if waits else {}
    t = _num(wait.get("t")) if wait else _num(failed.get("t") if failed else 0)
    return Failure(
        t=t,
        message=_text(failed.get("message")) if failed else "",
        wait_peer=_text(wait.get("peer")),
        wait_what=_text(wait.get("what")),
        wait_from=max(0.0, t - _num(wait.get("timeout_s"))) if wait else t,
    )


def _plots(client: str, records: list[dict[str, Any]], names: dict[str, str]) -> list[SourcePlot]:
    """One plot per download that began with two or more sources."""
    plots = []
    for begin in records:
        sources = _list(begin.get("sources"))
        if begin.get("event") != "download-begin" or len(sources) < 2:
            continue
        game, began = begin.get("game_id"), _num(begin.get("t"))
        totals = {str(s): 0 for s in sources}
        points: dict[str, list[tuple[float, int]]] = {s: [(began, 0)] for s in totals}
        for r in records:
            addr, t = r.get("peer_addr"), _num(r.get("t"))
            chunk = r.get("event") == "download-chunk-finished" and r.get("game_id") == game
            if chunk and isinstance(addr, str) and addr in totals and t >= began:
                totals[addr] += int(_num(r.get("bytes")))
                points[addr].append((t, totals[addr]))
        last = max(p[-1][0] for p in points.values())
        for p in points.values():  # every source's line runs to the end, a silent one flat
            if p[-1][0] < last:
                p.append((last, p[-1][1]))
        series = tuple(Series(names.get(a, a), tuple(p)) for a, p in points.items())
        plots.append(SourcePlot(client, _text(game), series))
    return plots


def decode(raw: Any) -> Timeline:
    """The drawable timeline of one scenario's JSON (as `json.loads` returned it)."""
    data = _dict(raw)
    peers = _dict(data.get("peers"))
    actions = [a for a in _list(data.get("lab")) if isinstance(a, dict)]
    names = {_text(p.get("addr")): n for n, p in peers.items() if isinstance(p, dict)}
    lanes = [Lane(LAB, "", tuple(_lab_mark(a, names) for a in actions))]
    plots: list[SourcePlot] = []
    problems = [] if data.get("peers") is not None else ["no peers in this timeline"]
    for name, peer in peers.items():
        if not isinstance(peer, dict):
            continue
        records = [r for r in _list(peer.get("records")) if isinstance(r, dict)]
        tail = tuple(str(line) for line in _list(peer.get("stderr_tail")))
        lanes.append(
            Lane(str(name), _text(peer.get("addr")), tuple(map(_peer_mark, records)), tail)
        )
        plots += _plots(str(name), records, names)
    end = max((m.t for lane in lanes for m in lane.marks), default=0.0)
    return Timeline(
        scenario=_text(data.get("scenario")),
        lanes=tuple(lanes),
        failure=_failure(actions),
        plots=tuple(plots),
        end=end,
        problems=tuple(problems),
        bands=tuple(_bands(actions, end)),
    )
