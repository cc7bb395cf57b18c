"""`python -m peer.probe ADDR`: ask a live peer one raw question and print its answer.

For people debugging a LAN ("what does that peer serve, and why not?") and for the S12 scenario:
it introduces itself with a throwaway identity, sends one control request and/or one fast-lane
chunk request, prints the replies as JSON lines, and says goodbye.
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

from peer.errors import PeerError
from peer.identity import load_or_create_identity
from peer.transport import ControlConnection, ControlEndpoint, fetch_chunk, split_addr
from peer.wire import PROTOCOL_VERSION, Message


async def _refuse(conn: ControlConnection, msg: Message) -> Message:
    return (
        {"type": "ok"}
        if msg["type"] in ("ping", "library-delta", "goodbye")
        else {"type": "error", "code": "probe", "message": "a probe answers nothing"}
    )


async def probe(addr: str, request: Message | None, chunk: Message | None) -> list[Message]:
    host, port = split_addr(addr)
    out: list[Message] = []
    with tempfile.TemporaryDirectory(prefix="lanpeer-probe-") as state:
        identity = load_or_create_identity(Path(state))
        endpoint = ControlEndpoint(identity, _refuse, lambda _c: None, 10.0, 10.0)
        conn = await endpoint.connect(host, port, timeout=5.0)
        try:
            ack = await conn.request(
                {
                    "type": "hello",
                    "proto": PROTOCOL_VERSION,
                    "peer_id": identity.peer_id,
                    "listen_addr": "0.0.0.0:9",
                    "data_port": 9,
                    "data_token": "",
                    "rev": 0,
                    "games": [],
                }
            )
            out.append({"hello": {k: ack.get(k) for k in ("type", "peer_id", "listen_addr")}})
            if request is not None:
                out.append({"reply": await conn.request(request)})
            if chunk is not None:
                received = 0

                def count(_offset: int, data: bytes) -> None:
                    nonlocal received
                    received += len(data)

                full = {"token": ack.get("data_token", ""), **chunk}
                try:
                    await fetch_chunk(host, int(ack["data_port"]), full, count, 10.0)
                    out.append({"chunk": {"type": "chunk", "received": received}})
                except PeerError as exc:
                    out.append(
                        {"chunk": {"type": "error", "code": exc.code, "message": exc.message}}
                    )
            with contextlib.suppress(PeerError):
                await conn.request({"type": "goodbye", "peer_id": identity.peer_id}, timeout=2)
        finally:
            conn.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m peer.probe", description=__doc__)
    p.add_argument("addr", help="the peer's ready address HOST:PORT")
    p.add_argument(
        "--request",
        type=json.loads,
        help='control request, e.g. \'{"type":"get-game","game_id":"bfbc2"}\'',
    )
    p.add_argument(
        "--chunk",
        type=json.loads,
        help='fast-lane request, e.g. \'{"game_id":'
        '"bfbc2","path":"bfbc2.eti","offset":0,"length":10}\'',
    )
    args = p.parse_args(argv)
    try:
        lines: list[Any] = asyncio.run(probe(args.addr, args.request, args.chunk))
    except PeerError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        return 1
    for line in lines:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
