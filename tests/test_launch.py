"""First-play stamping: which file wins, line endings, and the tried-once marker."""

from __future__ import annotations

from pathlib import Path

from peer.launch import apply_launch_settings, find_first, set_persona_name


def test_persona_line_keeps_spacing_ending_and_siblings() -> None:
    text = b"[S]\r\nAppId = 1\r\n  PersonaName =  old  \r\nPersonaName=second\r\n"
    assert set_persona_name(text, "neo") == (
        b"[S]\r\nAppId = 1\r\n  PersonaName =  neo  \r\nPersonaName=second\r\n"
    )
    assert set_persona_name(b"PersonaName=x", "neo") == b"PersonaName=neo"
    assert set_persona_name(b"Name=x\n", "neo") is None


def test_first_file_in_alphabetical_depth_first_order_wins(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "b" / "language.txt").write_text("b")
    (tmp_path / "a" / "deep" / "language.txt").write_text("a")
    (tmp_path / "a" / "link.txt").symlink_to(tmp_path / "b" / "language.txt")
    assert find_first(tmp_path, "language.txt") == tmp_path / "a" / "deep" / "language.txt"


def test_marker_is_written_even_when_nothing_matched_and_blocks_a_second_play(
    tmp_path: Path,
) -> None:
    local, marker = tmp_path / "local", tmp_path / "state" / "launch_settings_applied"
    local.mkdir()
    first = apply_launch_settings(local, marker, "neo", "english")
    assert first == {
        "already_applied": False,
        "account_name_written": False,
        "language_written": False,
        "persona_name_written": False,
    }
    assert marker.exists()
    (local / "account_name.txt").write_text("stub")
    second = apply_launch_settings(local, marker, "trinity", "german")
    assert second["already_applied"] is True
    assert (local / "account_name.txt").read_text() == "stub"
