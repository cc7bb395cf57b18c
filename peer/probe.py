"""`python -m peer.probe ADDR`: ask a live peer one raw question and print its answer.

For people debugging a LAN ("what does that peer serve, and why not?") and for the S12 scenario:
it introduces itself with a throwaway identity, sends one control request and/or one fast-lane
chunk request as given (raw JSON, unvalidated, so it can ask what no honest peer would), prints
the replies as JSON lines, and says goodbye.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.identity import load_or_create_identity
from peer.protocol import (
    PROTOCOL_VERSION,
    ErrorReply,
    Goodbye,
    Hello,
    HelloAck,
    Ok,
    Ping,
    Pong,
    Reply,
    Request,
    decode_lane_reply,
    expect,
)
from peer.quic import ControlConnection, split_addr

Json = dict[str, Any]


async def _answer(conn: ControlConnection, request: Request) -> Reply:
    if isinstance(request, Ping):
        return Pong()
    if isinstance(request, Hello):
        return ErrorReply("not-servable", "a probe answers nothing")
    return Ok()


async def _raw_chunk(host: str, port: int, request: Json) -> Json:
    """Send one fast-lane request line as given; count the bytes that come back."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        reply = decode_lane_reply(await reader.readline())
        if isinstance(reply, ErrorReply):
            return {"type": "error", "code": reply.code, "message": reply.message}
        received = 0
        while data := await reader.read(1024 * 1024):
            received += len(data)
        return {"type": "chunk", "received": received}
    finally:
        writer.close()


async def probe(
    addr: str, request: Json | None, chunk: Json | None, claim: str | None = None
) -> list[Json]:
    host, port = split_addr(addr)
    out: list[Json] = []
    with tempfile.TemporaryDirectory(prefix="lanpeer-probe-") as state:
        identity = load_or_create_identity(Path(state))
        endpoint = ControlEndpoint(identity, _answer, lambda _c: None, 10.0, 10.0)
        conn = await endpoint.connect(host, port, timeout=5.0)
        try:
            claimed = claim or identity.peer_id
            hello = Hello(PROTOCOL_VERSION, claimed, "0.0.0.0:9", 9, "", 0, ())
            ack = expect(await conn.request(hello), HelloAck)
            out.append({"hello": {"type": "hello-ack", "peer_id": ack.peer_id}})
            if request is not None:
                reply = await conn.request(json.dumps(request).encode())
                out.append({"reply": msgspec.to_builtins(reply)})
            if chunk is not None:
                full = {"type": "get-chunk", "token": ack.data_token, **chunk}
                try:
                    out.append({"chunk": await _raw_chunk(host, ack.data_port, full)})
                except (OSError, PeerError) as exc:
                    out.append({"chunk": {"type": "error", "code": "probe", "message": str(exc)}})
            with contextlib.suppress(PeerError):
                await conn.request(Goodbye(identity.peer_id), timeout=2)
        finally:
            conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m peer.probe", description=__doc__)
    p.add_argument("addr", help="the peer's ready address HOST:PORT")
    p.add_argument(
        "--request",
        type=json.loads,
        help='control request, e.g. \'{"type":"get-game","game_id":"bfbc2","chunk_size":65536}\'',
    )
    p.add_argument(
        "--chunk",
        type=json.loads,
        help='fast-lane request, e.g. \'{"game_id":'
        '"bfbc2","path":"bfbc2.eti","offset":0,"length":10}\'',
    )
    p.add_argument(
        "--claim",
        metavar="PEER_ID",
        help="introduce the probe as this peer id (which its key does not prove: a spoof)",
    )
    args = p.parse_args(argv)
    try:
        lines = asyncio.run(probe(args.addr, args.request, args.chunk, args.claim))
    except PeerError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        return 1
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
