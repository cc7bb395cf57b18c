"""Validation of what remote peers send, library deltas, identity and manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.manifest import Manifest, scan_manifest
from peer.errors import PeerError
from peer.identity import load_or_create_identity, uuid7_hex
from peer.wire import (
    GameSummary,
    apply_delta,
    decode,
    library_delta,
    parse_file_list,
    parse_library,
)

H = "a" * 64


def files(*paths: str) -> list[dict[str, object]]:
    return [{"path": p, "size": 1, "chunk_size": 8, "chunks": [H]} for p in paths]


@pytest.mark.parametrize(
    "paths",
    [
        ["../x"],
        ["/etc/passwd"],
        ["local/x"],
        [".local.backup/x"],
        ["a", "a"],
        ["a", "a/b"],
        ["a/./b"],
        ["a\\b"],
    ],
)
def test_hostile_file_lists_are_refused(paths: list[str]) -> None:
    with pytest.raises(PeerError):
        parse_file_list(files(*paths))


def test_chunk_count_must_match_size() -> None:
    raw = [{"path": "a", "size": 17, "chunk_size": 8, "chunks": [H, H]}]
    with pytest.raises(PeerError):
        parse_file_list(raw)
    raw[0]["chunks"] = [H, H, H]
    assert parse_file_list(raw)[0].size == 17


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"[]", b'{"no":"type"}', b"{" * 5000],
)
def test_undecodable_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(PeerError):
        decode(raw)


def summary(gid: str, version: str = "1") -> GameSummary:
    return GameSummary(gid, version, True, False, "Ready", 10)


def test_delta_round_trip() -> None:
    old = {"a": summary("a"), "b": summary("b")}
    new = {"b": summary("b", "2"), "c": summary("c")}
    delta = library_delta(old, new)
    assert [g.game_id for g in delta.added] == ["c"]
    assert [g.game_id for g in delta.updated] == ["b"]
    assert delta.removed == ("a",)
    assert apply_delta(old, delta) == new
    assert library_delta(new, new).empty


def test_library_rejects_bad_summaries() -> None:
    with pytest.raises(PeerError):
        parse_library([{"game_id": "../x", "availability": "Ready"}])
    with pytest.raises(PeerError):
        parse_library([{"game_id": "a", "availability": "Downloading"}])


def test_identity_is_created_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    again = load_or_create_identity(tmp_path)
    assert first == again and len(first.peer_id) == 32
    assert (tmp_path / "tls-key.pem").stat().st_mode & 0o077 == 0, "key is private"


def test_uuid7_is_time_ordered_v7() -> None:
    a, b = uuid7_hex(1_000), uuid7_hex(2_000)
    assert a < b and a[12] == "7" and int(a[16], 16) & 0b1100 == 0b1000


def test_manifest_diff_names_missing_extra_and_changed(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "ignored").write_text("x")
    left = Manifest.from_scan(scan_manifest(str(tmp_path), ["local"]))
    assert list(left.files) == ["a"]
    right = Manifest({"a": (1, "0" * 64), "b": (1, "1" * 64)})
    diff = left.diff(right)
    assert any("differs" in d and " a " in d for d in diff)
    assert any("only right: b" in d for d in diff)


def test_discovery_parses_only_compatible_announcements() -> None:
    from peer.discovery import parse_announcement, should_dial

    pid = "0" * 31 + "1"
    good = {b"peer_id": pid.encode(), b"proto_ver": b"1"}
    assert parse_announcement(good, ["10.0.0.2"], 4000) == (pid, "10.0.0.2:4000")
    assert parse_announcement({**good, b"proto_ver": b"0"}, ["10.0.0.2"], 4000) is None
    assert parse_announcement({b"peer_id": b"short"}, ["10.0.0.2"], 4000) is None
    assert parse_announcement(good, [], 4000) is None
    assert should_dial("a" * 32, "b" * 32) != should_dial("b" * 32, "a" * 32)
