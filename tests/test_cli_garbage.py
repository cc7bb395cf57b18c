"""Arbitrary stdin lines against a live peer: each gets an error record, the peer keeps serving.

The peer runs as a real subprocess (the local backend), so this covers the whole path from
stdin bytes to stdout records, including lines that are not UTF-8 or not JSON at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backends.base import PeerSpec
from harness.backends.local import LocalBackend
from harness.peer import PeerHandle

SAFE_COMMANDS = [
    "status",
    "list-peers",
    "list-games",
    "download",
    "install",
    "uninstall",
    "fly",
    "",
    "DOWNLOAD",
    "connect",
]


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerHandle]:
    backend = LocalBackend("garbage")
    spec = PeerSpec(name="garbage", args=("--fixture", "bfbc2"))
    handle = PeerHandle(backend.create(spec), spec)
    handle.start()
    try:
        yield handle
    finally:
        backend.close()


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
game_ids = st.sampled_from(["bfbc2", "../etc", "..", "a/b", "/abs", "x" * 100, "", "nope"])
commands = st.fixed_dictionaries(
    {"cmd": st.sampled_from(SAFE_COMMANDS)},
    optional={
        "game_id": game_ids | scalars,
        "install": scalars,
        "addr": st.sampled_from(["nope", "1:2:3", ":0", "x:99999", ""]) | scalars,
        "id": scalars,
        "extra": scalars,
    },
).map(json.dumps)
raw_lines = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" "))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(line=st.one_of(commands, raw_lines.map(lambda b: b.decode("latin-1")), st.text(max_size=80)))
def test_every_line_gets_one_record_and_the_peer_keeps_serving(peer: PeerHandle, line: str) -> None:
    line = line.replace("\n", " ").replace("\r", " ")
    before = peer.mark()
    peer.write_line(line)
    status = peer.send("status", timeout=30)  # still answering
    assert status["peer_id"] == peer.peer_id
    replies = [
        r
        for r in peer.records[before:]
        if r.get("type") in ("result", "error") and r.get("cmd") != "status"
    ]
    if line.strip() and not line.startswith('{"cmd": "status"'):
        assert len(replies) <= 1, replies
        for reply in replies:
            if reply["type"] == "error":
                assert reply["code"] and reply["message"], reply
    assert not peer.garbage, f"non-JSON on stdout: {peer.garbage[:3]}"
    assert peer.game("bfbc2") is not None, "bad input must not touch local games"


def test_oversized_line_is_refused_and_peer_survives(peer: PeerHandle) -> None:
    before = peer.mark()
    peer.write_line("x" * (2 * 1024 * 1024))
    assert peer.send("status")["peer_id"] == peer.peer_id
    codes = [r.get("code") for r in peer.records[before:] if r.get("type") == "error"]
    assert codes == ["line-too-long"]
