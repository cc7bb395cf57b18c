"""A scenario timeline as `Lab.write_timeline` writes it, for the report's tests: a source is
killed mid-download and the client fails over to the other source, then a wait times out."""

from __future__ import annotations

from typing import Any

SURVIVOR, VICTIM, CLIENT = "10.0.0.2:4000", "10.0.0.3:4000", "10.0.0.4:4000"


def _event(t: float, name: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "type": "event", "ts": "2026-11-25T10:00:00Z", "event": name, **fields}


def _chunk(t: float, addr: str, offset: int, size: int) -> dict[str, Any]:
    return _event(
        t, "download-chunk-finished", game_id="alienswarm", peer_addr=addr, path="a.eti",
        offset=offset, bytes=size,
    )  # fmt: skip


def timeline() -> dict[str, Any]:
    mib = 2**20
    return {
        "scenario": "S99",
        "peers": {
            "survivor": {
                "addr": SURVIVOR,
                "peer_id": "p1",
                "records": [_event(0.2, "local-peer-ready", addr=SURVIVOR)],
                "stderr_tail": ['{"event": "serving"}'],
                "non_json_stdout": [],
            },
            "victim": {
                "addr": VICTIM,
                "peer_id": "p2",
                "records": [_event(2.4, "local-peer-ready", addr=VICTIM)],
                "stderr_tail": [],
                "non_json_stdout": [],
            },
            "client": {
                "addr": CLIENT,
                "peer_id": "p3",
                "records": [
                    _event(5.0, "local-peer-ready", addr=CLIENT),
                    {"t": 5.1, "type": "result", "cmd": "connect", "id": 1, "data": {}},
                    _event(5.3, "download-begin", game_id="alienswarm", sources=[SURVIVOR, VICTIM]),
                    _chunk(5.5, VICTIM, 0, 32 * mib),
                    _event(5.6, "download-source-excluded", game_id="alienswarm", peer_addr=VICTIM),
                    _chunk(6.0, SURVIVOR, 32 * mib, 32 * mib),
                    _chunk(6.4, SURVIVOR, 64 * mib, 16 * mib),
                    _event(6.5, "download-finished", game_id="alienswarm", note="<b>bold</b>"),
                ],
                "stderr_tail": ["last words on stderr"],
                "non_json_stdout": [],
            },
        },
        "lab": [
            {"t": 0.0, "action": "start", "peer": "survivor", "args": ["--no-mdns"]},
            {"t": 0.0, "action": "throttle", "peer": "survivor", "max_upload_rate": "25165824"},
            {"t": 2.2, "action": "start", "peer": "victim", "args": ["--no-mdns"]},
            {"t": 4.8, "action": "start", "peer": "client", "args": ["--no-mdns"]},
            {
                "t": 5.05,
                "action": "command",
                "peer": "client",
                "cmd": "connect",
                "id": 1,
                "args": {"addr": SURVIVOR},
            },
            {"t": 5.55, "action": "kill", "peer": "victim"},
            {"t": 6.45, "action": "write", "peer": "survivor", "path": "cod5/version.ini"},
            {"t": 6.46, "action": "take-identity", "peer": "victim", "of": "survivor"},
            {
                "t": 16.5,
                "action": "wait-timed-out",
                "peer": "client",
                "what": "event install-finished where None",
                "timeout_s": 10.0,
            },
            {"t": 16.6, "action": "failed", "message": "AssertionError: peer client: timed out"},
        ],
    }
