"""Arbitrary stdin lines against a live peer: each gets exactly one reply, the peer keeps serving.

The peer runs as a real subprocess (the local backend), so this covers the whole path from
stdin bytes to stdout records, including lines that are not UTF-8 or not JSON at all.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backends.local import local_peer
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
def peer(worker_id: str) -> Iterator[PeerHandle]:
    with local_peer("garbage", worker_id, args=("--fixture", "bfbc2")) as handle:
        yield handle


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


# How long a line's reply may lag behind the status probe sent after it (the peer runs commands
# concurrently). Short, so that a missing reply fails fast while Hypothesis shrinks, except for
# `connect`, which dials: it answers only when the dial fails or times out.
REPLY_GRACE = 3.0
CONNECT_REPLY_GRACE = 30.0


def _dials(line: str) -> bool:
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("cmd") == "connect"


def _replies_after(
    peer: PeerHandle, before: int, probe_id: str, want_reply: bool, grace: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Wait until the probe is answered and, if `want_reply`, the line too (in either order);
    return (the line's replies, the probe's replies)."""

    def is_reply(record: dict[str, Any], probe: bool) -> bool:
        answered = record.get("type") in ("result", "error")
        return answered and (record.get("id") == probe_id) == probe

    peer.wait_for_record(lambda r: is_reply(r, True), before, "the status probe's reply", 30.0)
    if want_reply:  # the probe is in: the line has `grace` seconds left for its own reply
        peer.wait_for_record(lambda r: is_reply(r, False), before, "a reply to the line", grace)
    replies = [r for r in peer.records[before:] if r.get("type") in ("result", "error")]
    return [r for r in replies if r.get("id") != probe_id], [
        r for r in replies if r.get("id") == probe_id
    ]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(line=st.one_of(commands, raw_lines.map(lambda b: b.decode("latin-1")), st.text(max_size=80)))
def test_every_line_gets_one_reply_and_the_peer_keeps_serving(peer: PeerHandle, line: str) -> None:
    line = line.replace("\n", " ").replace("\r", " ")
    # The peer strips each line (str.strip(), after decoding) and ignores what is left empty;
    # every other line, a status command included, gets exactly one result or error.
    want_reply = bool(line.strip())
    before = peer.mark()
    peer.write_line(line)
    probe_id = f"probe-{uuid.uuid4().hex}"  # an id no generated line can carry
    peer.write_line(json.dumps({"cmd": "status", "id": probe_id}))
    grace = CONNECT_REPLY_GRACE if _dials(line) else REPLY_GRACE
    replies, probe = _replies_after(peer, before, probe_id, want_reply, grace)

    assert len(probe) == 1 and probe[0]["type"] == "result", (probe, peer.context())
    assert probe[0]["data"]["peer_id"] == peer.peer_id  # still answering
    if want_reply:
        assert len(replies) == 1, (
            f"{line!r} got {len(replies)} replies, not one: {replies}\n{peer.context()}"
        )
        if replies[0]["type"] == "error":
            assert replies[0]["code"] and replies[0]["message"], replies
    else:
        assert replies == [], f"blank line {line!r} was answered: {replies}"
    assert not peer.garbage, f"non-JSON on stdout: {peer.garbage[:3]}"
    assert peer.game("bfbc2") is not None, "bad input must not touch local games"


def test_oversized_line_is_refused_and_peer_survives(peer: PeerHandle) -> None:
    before = peer.mark()
    peer.write_line("x" * (2 * 1024 * 1024))
    assert peer.send("status")["peer_id"] == peer.peer_id
    codes = [r.get("code") for r in peer.records[before:] if r.get("type") == "error"]
    assert codes == ["line-too-long"]
