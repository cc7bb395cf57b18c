"""A download's root on disk: after `prepare_root` it holds exactly the new file set.

An update over an older version must not keep the old version's files (they would be served
on and split every later vote), and a layout change (a file that became a folder, or the other
way round) must not block the download. The install, the staging and external tools' files
are left alone, and nothing outside the root is touched through a link.
"""

from __future__ import annotations

from pathlib import Path

from peer.protocol import FileDescriptor, chunk_count
from peer.transfer.disk import prepare_root

H = "0" * 64


def desc(path: str, size: int) -> FileDescriptor:
    return FileDescriptor(path, size, 8, (H,) * chunk_count(size, 8))


NEW = (desc("game.eti", 20), desc("data", 3), desc("bin/tool.exe", 9), desc("version.ini", 9))


def tree(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_the_root_holds_exactly_the_new_files_after_an_update(tmp_path: Path) -> None:
    root = tmp_path / "g"
    (root / "data").mkdir(parents=True)  # a folder that became a file
    (root / "data" / "old.bin").write_bytes(b"old")
    (root / "bin").write_bytes(b"a file that became a folder")
    (root / "old-only.eti").write_bytes(b"the old version's archive")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "x").write_bytes(b"x")
    (root / "version.ini").write_text("20240101\n")
    (root / "game.eti").write_bytes(b"z" * 50)  # larger than the new one
    prepare_root(root, NEW)
    assert tree(root) == {"game.eti": 20, "data": 3, "bin/tool.exe": 9, ".version.ini.tmp": 9}


def test_the_install_and_external_tools_files_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "g"
    (root / "local").mkdir(parents=True)
    (root / "local" / "save.dat").write_bytes(b"mine")
    (root / ".sync").mkdir()
    (root / ".sync" / "state").write_bytes(b"tool")
    (root / ".lanspread.json").write_text("{}")
    prepare_root(root, NEW)
    kept = tree(root)
    assert kept["local/save.dat"] == 4 and kept[".sync/state"] == 4 and ".lanspread.json" in kept


def test_a_link_in_the_root_is_removed_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "g"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keep").mkdir(parents=True)
    (elsewhere / "keep" / "file").write_bytes(b"outside")
    root.mkdir()
    (root / "bin").symlink_to(elsewhere / "keep")  # where the new version needs a folder
    (root / "stray").symlink_to(elsewhere / "keep" / "file")
    prepare_root(root, NEW)
    assert (elsewhere / "keep" / "file").read_bytes() == b"outside"
    assert not (root / "bin").is_symlink() and (root / "bin" / "tool.exe").is_file()
    assert not (root / "stray").exists() and not (root / "stray").is_symlink()
