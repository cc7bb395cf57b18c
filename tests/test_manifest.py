"""SHA-256 manifests of game roots and their readable diffs (the lab's main assertion)."""

from __future__ import annotations

from pathlib import Path

from harness.manifest import Manifest, scan_manifest


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
