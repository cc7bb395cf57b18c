"""A live peer under hostile input: garbage on its control plane (before and after Hello) and
on its fast lane gets one refusal per request or a closed connection, never silence, and the
peer still answers `status` and serves a legitimate chunk afterwards.

The decoders alone are fuzzed in tests/test_protocol.py; this drives the same kinds of input
through the real QUIC and TCP handlers of a running node, so a crash or a hang in the path
around the decoder shows too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodes import CATALOG, Peer, Start, ready

from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.identity import load_or_create_identity
from peer.protocol import MAX_LANE_LINE, ErrorReply, Pong, Reply, Request
from peer.quic import ControlConnection

HOSTILE_VALUES: list[Any] = [
    None, True, -1, 2**64, 10**4000, 1.5, "", "x" * 5000, "../../etc/passwd", "/etc/passwd",
    "local/x", "\x00", [], {}, [[[]]], {"type": "ping"}, "ping",
]  # fmt: skip
GOOD: dict[str, dict[str, Any]] = {
    "hello": {"type": "hello", "proto": 3, "peer_id": "0" * 32, "listen_addr": "h:1",
              "data_port": 1, "data_token": "t", "rev": 0, "games": []},
    "ping": {"type": "ping", "peer_id": "0" * 32},
    "get-game": {"type": "get-game", "game_id": "bfbc2", "chunk_size": 65536},
    "get-stream": {"type": "get-stream", "game_id": "bfbc2"},
    "library-delta": {"type": "library-delta", "peer_id": "0" * 32, "from_rev": 0,
                      "to_rev": 1, "added": [], "updated": [], "removed": []},
    "duplicate-identity": {"type": "duplicate-identity", "peer_id": "0" * 32, "addrs": ["h:1"]},
    "get-chunk": {"type": "get-chunk", "token": "t", "game_id": "bfbc2", "path": "bfbc2.eti",
                  "offset": 0, "length": 16},
    "get-entries": {"type": "get-entries", "token": "t", "game_id": "bfbc2"},
}  # fmt: skip


def hostile_lines(seed: int, count: int) -> Iterator[bytes]:
    """Well-formed messages with one field made hostile, then bytes that are not messages."""
    rng = random.Random(seed)
    for message in GOOD.values():
        for field in message:
            for value in HOSTILE_VALUES:
                yield json.dumps({**message, field: value}).encode()
        yield json.dumps({k: v for k, v in message.items() if k != "type"}).encode()
        yield json.dumps({**message, "extra": 1}).encode()
    yield b"[" * 100_000 + b"]" * 100_000
    yield b'{"type": "ping", "peer_id": ' + b"9" * 100_000 + b"}"
    for _ in range(count):
        raw = json.dumps(rng.choice(list(GOOD.values()))).encode()
        cut = rng.randrange(len(raw))
        yield rng.choice([raw[:cut], raw[:cut] + rng.randbytes(8) + raw[cut:], rng.randbytes(64)])


async def stranger(tmp_path: Path, target: Peer) -> ControlConnection:
    async def answer(_conn: ControlConnection, request: Request) -> Reply:
        return Pong()

    identity = load_or_create_identity(tmp_path / "stranger")
    endpoint = ControlEndpoint(identity, answer, lambda _c: None, 5.0, 30.0)
    port = int(target.node.addr.rpartition(":")[2])  # the control port, not the lane's
    return await endpoint.connect("127.0.0.1", port, timeout=5.0)


async def each_answered(conn: ControlConnection, lines: Iterator[bytes]) -> int:
    answered = 0
    for line in lines:
        if conn.closed:
            return answered
        try:
            reply = await conn.request(line, timeout=5.0)
        except PeerError as exc:
            assert exc.code == "bad-message", (line[:200], exc)  # a reply we could not read
            continue
        answered += isinstance(reply, ErrorReply)

    return answered


async def lane_answer(port: int, line: bytes) -> bytes:
    """What the lane sends back to one request line (b"" if it closed or reset at once)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(line + b"\n")
        writer.write_eof()
        async with asyncio.timeout(5.0):
            return await reader.read()
    except ConnectionResetError:  # refused a line over the limit while we were still sending
        return b""
    finally:
        writer.close()


async def test_a_live_peer_survives_hostile_control_and_lane_input(
    start: Start, tmp_path: Path
) -> None:
    a, c = await start("a"), await start("c")
    root = a.games / "bfbc2"
    root.mkdir(parents=True)
    (root / "bfbc2.eti").write_bytes(hashlib.sha256(b"x").digest() * 64)
    (root / "version.ini").write_text(CATALOG["bfbc2"])
    await ready(a)
    await ready(c)
    await c.run("connect", addr=a.node.addr)

    introduced = c.node.links.conns[a.node.peer_id]
    assert await each_answered(introduced, hostile_lines(1, 300)) > 300
    # Before Hello: each gets a refusal (`not-introduced`, or `bad-message` for garbage).
    outsider = await stranger(tmp_path, a)
    assert await each_answered(outsider, hostile_lines(2, 30)) > 0

    tokened = {**GOOD["get-chunk"], "token": a.node.data_token}  # past the token check
    lane_lines = list(hostile_lines(3, 200)) + [
        json.dumps({**tokened, k: v}).encode()
        for k in ("path", "offset", "length", "game_id")
        for v in HOSTILE_VALUES
    ]
    for line in lane_lines:
        answer = await lane_answer(a.node.data_port, line)
        if not answer and len(line) >= MAX_LANE_LINE:
            continue  # refused while we were still sending it
        head = json.loads(answer.split(b"\n", 1)[0])
        assert head["type"] == "error", (line[:200], answer[:200])

    assert (await a.run("status"))["peer_id"] == a.node.peer_id
    answer = await lane_answer(a.node.data_port, json.dumps(tokened).encode())
    head, body = answer.split(b"\n", 1)
    assert json.loads(head) == {"type": "chunk", "length": 16}
    assert body == (root / "bfbc2.eti").read_bytes()[:16]
    assert not introduced.closed, "the honest link survived it all"
    await c.run("download", game_id="bfbc2", install=False)
    await c.wait("download-finished", game_id="bfbc2")
