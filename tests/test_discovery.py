"""mDNS announcements: only compatible lanpeers are dialled, and only by one side."""

from __future__ import annotations

from peer.discovery import parse_announcement, should_dial
from peer.protocol import PROTOCOL_VERSION


def test_discovery_parses_only_compatible_announcements() -> None:
    pid = "0" * 31 + "1"
    good = {b"peer_id": pid.encode(), b"proto_ver": str(PROTOCOL_VERSION).encode()}
    assert parse_announcement(good, ["10.0.0.2"], 4000) == (pid, "10.0.0.2:4000")
    assert parse_announcement({**good, b"proto_ver": b"0"}, ["10.0.0.2"], 4000) is None
    assert parse_announcement({b"peer_id": b"short"}, ["10.0.0.2"], 4000) is None
    assert parse_announcement(good, [], 4000) is None
    assert should_dial("a" * 32, "b" * 32) != should_dial("b" * 32, "a" * 32)
    assert should_dial("a" * 32, "a" * 32), "our id at another address is a clone: dial it"
