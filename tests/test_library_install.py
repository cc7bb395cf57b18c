"""Library scanning and the install transaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peer.errors import PeerError
from peer.install import install_game, recover, uninstall_game
from peer.library import read_sentinel, scan_library
from peer.unpack import FixtureUnpacker

CATALOG = {"bfbc2": "20250201", "ggoo": "20260101"}


def make_game(
    games: Path, game_id: str, archives: dict[str, bytes], version: str = "20250201"
) -> Path:
    root = games / game_id
    root.mkdir(parents=True)
    for name, data in archives.items():
        (root / name).write_bytes(data)
    (root / "version.ini").write_text(version + "\n")
    return root


def test_scan_reports_ready_local_only_and_skips_partial(tmp_path: Path) -> None:
    make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    (tmp_path / "ggoo" / "local").mkdir(parents=True)
    (tmp_path / "cnc4").mkdir()
    (tmp_path / "cnc4" / "cnc4.eti").write_bytes(b"partial download")
    (tmp_path / "Not A Game").mkdir()
    games = scan_library(tmp_path)
    assert set(games) == {"bfbc2", "ggoo"}
    assert games["bfbc2"].availability == "Ready" and games["bfbc2"].downloaded
    assert games["ggoo"].availability == "LocalOnly" and not games["ggoo"].downloaded


def test_fixture_payload_is_the_single_archive(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"archive bytes"})
    install_game(root, FixtureUnpacker())
    assert (root / "local" / "fixture-payload.txt").read_bytes() == b"archive bytes"
    assert not (root / ".local.installing").exists()


def test_fixture_payload_of_several_archives_is_their_sorted_concatenation(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"z-second.eti": b"2", "a-first.eti": b"1"})
    install_game(root, FixtureUnpacker())
    assert (root / "local" / "fixture-payload.txt").read_bytes() == b"12"


def test_no_archive_installs_an_empty_local(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"readme.txt": b"loose"})
    install_game(root, FixtureUnpacker())
    assert (root / "local").is_dir() and list((root / "local").iterdir()) == []


class Exploding:
    def unpack(self, archives: list[Path], dest: Path) -> None:
        (dest / "half-written").write_text("x")
        raise PeerError("install-failed", "boom")


def test_failed_install_leaves_no_local_and_no_staging(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    with pytest.raises(PeerError):
        install_game(root, Exploding())
    assert not (root / "local").exists() and not (root / ".local.installing").exists()


def test_failed_update_keeps_the_old_install(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    install_game(root, FixtureUnpacker())
    with pytest.raises(PeerError):
        install_game(root, Exploding())
    assert (root / "local" / "fixture-payload.txt").read_bytes() == b"a"


def test_install_needs_a_download(tmp_path: Path) -> None:
    root = tmp_path / "bfbc2"
    root.mkdir()
    with pytest.raises(PeerError) as err:
        install_game(root, FixtureUnpacker())
    assert err.value.code == "not-downloaded"


def test_uninstall_keeps_root_files(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    install_game(root, FixtureUnpacker())
    uninstall_game(root)
    assert not (root / "local").exists()
    assert (root / "bfbc2.eti").read_bytes() == b"a" and (root / "version.ini").exists()
    with pytest.raises(PeerError) as err:
        uninstall_game(root)
    assert err.value.code == "not-installed"


def test_recover_discards_staging_and_restores_interrupted_update(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    (root / ".local.installing").mkdir()
    (root / ".local.backup").mkdir()
    (root / ".local.backup" / "save.dat").write_text("keep me")
    recover(root)
    assert not (root / ".local.installing").exists()
    assert (root / "local" / "save.dat").read_text() == "keep me"


def test_discard_partial_keeps_the_install_and_external_tools_files(tmp_path: Path) -> None:
    from peer.install import discard_partial

    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"partial"})
    (root / "local").mkdir()
    (root / ".sync").mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "x").write_text("partial")
    discard_partial(root)
    assert sorted(p.name for p in root.iterdir()) == [".sync", "local"]
    empty = make_game(tmp_path, "ggoo", {"ggoo.eti": b"partial"})
    discard_partial(empty)
    assert not empty.exists(), "a root left empty is removed"


def test_recover_keeps_a_finished_local_and_drops_the_leftover_backup(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    (root / "local").mkdir()
    (root / "local" / "new.dat").write_text("the finished update")
    (root / ".local.backup").mkdir()
    (root / ".local.backup" / "old.dat").write_text("the previous install")
    recover(root)
    assert not (root / ".local.backup").exists()
    assert sorted(p.name for p in (root / "local").iterdir()) == ["new.dat"]


def test_recover_leaves_a_clean_root_alone(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    (root / "local").mkdir()
    (root / "local" / "save.dat").write_text("mine")
    recover(root)
    assert (root / "local" / "save.dat").read_text() == "mine"
    assert sorted(p.name for p in root.iterdir()) == ["bfbc2.eti", "local", "version.ini"]


@pytest.mark.parametrize(
    "make",
    ["symlink", "fifo", "directory", "large", "empty", "blank", "two-words", "not-utf8", "nul"],
)
def test_a_sentinel_that_is_not_a_small_well_formed_file_is_no_download(
    tmp_path: Path, make: str
) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    sentinel = root / "version.ini"
    sentinel.unlink()
    secret = tmp_path / "secret.txt"
    secret.write_text("20250201\n")
    if make == "symlink":
        sentinel.symlink_to(secret)
    elif make == "fifo":
        os.mkfifo(sentinel)  # opening it for reading must not block the scan
    elif make == "directory":
        sentinel.mkdir()
    else:
        content = {
            "large": b"2" * 300,
            "empty": b"",
            "blank": b" \n\t\n",
            "two-words": b"20250201 extra\n",
            "not-utf8": b"\xff\xfe2025\n",
            "nul": b"2025\x000201\n",
        }[make]
        sentinel.write_bytes(content)
    assert read_sentinel(root) is None
    assert scan_library(tmp_path) == {}, "not downloaded, not installed: not a game"


def test_a_well_formed_sentinel_is_read_stripped(tmp_path: Path) -> None:
    root = make_game(tmp_path, "bfbc2", {"bfbc2.eti": b"a"})
    for text, version in (("20250201\n", "20250201"), ("  1.2.0-beta+7 \r\n", "1.2.0-beta+7")):
        (root / "version.ini").write_text(text)
        assert read_sentinel(root) == version
