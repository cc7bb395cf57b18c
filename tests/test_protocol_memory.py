"""Decoding hostile input costs memory in proportion to the bytes allowed, never more.

The control plane accepts messages up to `MAX_MESSAGE_BYTES`; these are the shapes that make a
naive decoder allocate far more than the input (deep nesting, many tiny values, lists past
their length limit), each at the full size. The peak traced allocation while decoding stays
within a few times the input: a host cannot make a peer hold more than that per message.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable

import pytest

from peer.errors import PeerError
from peer.protocol import MAX_MESSAGE_BYTES, decode_reply, decode_request

N = MAX_MESSAGE_BYTES
SUMMARY = {"game_id": "g", "version": "1", "downloaded": True, "installed": False,
           "availability": "Ready", "size": 1}  # fmt: skip
INTRO = (
    b'{"type":"hello","proto":3,"peer_id":"' + b"0" * 32 + b'","listen_addr":"h:1",'
    b'"data_port":1,"data_token":"t","rev":0,"games":['
)


def many_games() -> bytes:
    games = (json.dumps({**SUMMARY, "game_id": f"g{i}"}).encode() for i in range(N // 120))
    return INTRO + b",".join(games) + b"]}"


def many_files() -> bytes:
    one = b'{"path":"p%d","size":1,"chunk_size":1,"chunks":["' + b"a" * 64 + b'"]}'
    files = b",".join(one % i for i in range(N // 110))
    return b'{"type":"game-files","game_id":"g","files":[' + files + b"]}"


CASES: dict[str, tuple[Callable[[bytes], object], Callable[[], bytes]]] = {
    "deep-nesting": (decode_request, lambda: b"[" * N),
    "tiny-values": (decode_request, lambda: INTRO + b"0," * (N // 2) + b"0]}"),
    "long-string": (decode_request, lambda: b'{"type":"ping","peer_id":"' + b"a" * N + b'"}'),
    "games-past-their-limit": (decode_request, many_games),
    "files-at-the-cap": (decode_reply, many_files),
}


@pytest.mark.parametrize("case", CASES)
def test_decoding_hostile_input_takes_bounded_memory(case: str) -> None:
    decode, build = CASES[case]
    data = build()[:N]
    tracemalloc.start()
    try:
        decode(data)
    except PeerError as exc:
        assert exc.code == "bad-message", exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= 4 * len(data), f"{case}: peak {peak} for {len(data)} bytes of input"
