"""The peer's identity: created once per state dir, private, time-ordered ids."""

from __future__ import annotations

from pathlib import Path

from peer.identity import load_or_create_identity, uuid7_hex


def test_identity_is_created_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    again = load_or_create_identity(tmp_path)
    assert first == again and len(first.peer_id) == 32
    assert (tmp_path / "tls-key.pem").stat().st_mode & 0o077 == 0, "key is private"


def test_uuid7_is_time_ordered_v7() -> None:
    a, b = uuid7_hex(1_000), uuid7_hex(2_000)
    assert a < b and a[12] == "7" and int(a[16], 16) & 0b1100 == 0b1000
