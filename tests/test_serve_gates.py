"""S12 serve gates, as unit tests of the one function that decides what may leave a peer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peer.errors import PeerError
from peer.protocol import ChunkRequest
from peer.transfer.serve import (
    DescriptorCache,
    authorize_chunk,
    check_serve_gates,
    hash_chunks,
)

CATALOG = {"bfbc2": "20250201", "cnc4": "20250301"}


@pytest.fixture
def games(tmp_path: Path) -> Path:
    root = tmp_path / "games" / "bfbc2"
    (root / "local").mkdir(parents=True)
    (root / "bfbc2.eti").write_bytes(b"x" * 100)
    (root / "version.ini").write_text("20250201\n")
    (root / "local" / "secret.txt").write_text("installed files")
    (tmp_path / "outside.txt").write_text("not yours")
    return tmp_path / "games"


def gate(
    games: Path, game_id: object, path: object = None, active: frozenset[str] = frozenset()
) -> Path:
    return check_serve_gates(games, CATALOG, active, game_id, path)


def refused(games: Path, *args: object, **kw: object) -> str:
    with pytest.raises(PeerError) as err:
        gate(games, *args, **kw)  # type: ignore[arg-type]
    return err.value.code


def test_ready_catalog_game_is_served(games: Path) -> None:
    assert gate(games, "bfbc2", "bfbc2.eti") == games / "bfbc2"
    assert gate(games, "bfbc2", "version.ini") == games / "bfbc2"


def test_non_catalog_id_is_refused(games: Path) -> None:
    (games / "mystery-game").mkdir()
    (games / "mystery-game" / "version.ini").write_text("20250201\n")
    assert refused(games, "mystery-game") == "not-servable"


def test_missing_sentinel_is_refused(games: Path) -> None:
    (games / "bfbc2" / "version.ini").unlink()
    assert refused(games, "bfbc2", "bfbc2.eti") == "not-servable"


def test_active_operation_is_refused(games: Path) -> None:
    assert refused(games, "bfbc2", active=frozenset({"bfbc2"})) == "not-servable"


def test_version_other_than_catalog_is_refused(games: Path) -> None:
    (games / "bfbc2" / "version.ini").write_text("20240101\n")
    assert refused(games, "bfbc2") == "not-servable"


@pytest.mark.parametrize(
    "path",
    [
        "local/secret.txt",
        "../outside.txt",
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../x",
        ".local.installing/x",
        "",
        ".",
        "a//b",
        "a\\..\\b",
        "x\x00y",
        5,
    ],
)
def test_paths_outside_the_transferable_root_are_refused(games: Path, path: object) -> None:
    assert refused(games, "bfbc2", path) == "bad-path"


def test_symlink_escaping_the_root_is_refused(games: Path) -> None:
    os.symlink(games.parent / "outside.txt", games / "bfbc2" / "link.txt")
    assert refused(games, "bfbc2", "link.txt") == "bad-path"


def test_symlinked_game_root_is_refused(games: Path) -> None:
    os.symlink(games / "bfbc2", games / "cnc4")
    assert refused(games, "cnc4") == "bad-path"


@pytest.mark.parametrize("game_id", ["..", "../x", "a/b", "", None, "UPPER", "x" * 80])
def test_bad_game_ids_are_refused(games: Path, game_id: object) -> None:
    assert refused(games, game_id) == "bad-game-id"


def test_descriptors_skip_reserved_names_and_cache_hashes(games: Path) -> None:
    cache = DescriptorCache()
    files = cache.describe(games / "bfbc2", 64)
    assert [f.path for f in files] == ["bfbc2.eti", "version.ini"]
    assert [len(f.chunks) for f in files] == [2, 1]
    assert cache.describe(games / "bfbc2", 64) == files


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 129])
def test_hash_chunks_counts(tmp_path: Path, size: int) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"a" * size)
    assert len(hash_chunks(f, 64)) == max(1, -(-size // 64))


def test_descriptor_cache_sees_a_same_size_rewrite(games: Path) -> None:
    cache = DescriptorCache()
    archive = games / "bfbc2" / "bfbc2.eti"
    before = cache.describe(games / "bfbc2", 64)
    stat = archive.stat()
    archive.write_bytes(b"y" * 100)  # same size, new bytes
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    after = cache.describe(games / "bfbc2", 64)
    assert [f.size for f in after] == [f.size for f in before]
    assert after[0].chunks != before[0].chunks, "a rewrite is hashed again"
    assert after[0].chunks == hash_chunks(archive, 64)


def chunk(**change: object) -> ChunkRequest:
    fields: dict[str, object] = {
        "token": "secret",
        "game_id": "bfbc2",
        "path": "bfbc2.eti",
        "offset": 0,
        "length": 100,
        **change,
    }
    return ChunkRequest(**fields)  # type: ignore[arg-type]


def authorize(games: Path, request: ChunkRequest, active: frozenset[str] = frozenset()) -> str:
    try:
        authorize_chunk(games, CATALOG, active, "secret", request)
    except PeerError as exc:
        return exc.code
    return "granted"


def test_authorize_grants_exactly_the_file(games: Path) -> None:
    assert authorize_chunk(games, CATALOG, frozenset(), "secret", chunk()) == (
        games / "bfbc2" / "bfbc2.eti",
        0,
        100,
    )
    assert authorize(games, chunk(offset=99, length=1)) == "granted"
    assert authorize(games, chunk(offset=100, length=0)) == "granted"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"token": "forged"}, "unauthorised"),
        ({"token": ""}, "unauthorised"),
        ({"token": "secret\u00e9"}, "unauthorised"),
        ({"offset": 1}, "bad-message"),
        ({"offset": 100, "length": 1}, "bad-message"),
        ({"length": 101}, "bad-message"),
        ({"path": "missing.eti"}, "not-servable"),
        ({"game_id": "cnc4"}, "not-servable"),
    ],
)
def test_authorize_refuses(games: Path, change: dict[str, object], code: str) -> None:
    assert authorize(games, chunk(**change)) == code


def test_authorize_checks_the_token_before_the_gates(games: Path) -> None:
    assert authorize(games, chunk(token="forged", game_id="cnc4")) == "unauthorised"


def test_authorize_refuses_a_game_with_an_operation(games: Path) -> None:
    assert authorize(games, chunk(), active=frozenset({"bfbc2"})) == "not-servable"


def test_authorize_never_reads_through_a_symlink_out_of_the_root(games: Path) -> None:
    (games / "bfbc2" / "leak.eti").symlink_to(games.parent / "outside.txt")
    assert authorize(games, chunk(path="leak.eti", length=9)) == "bad-path"


def test_descriptors_leave_out_symlinked_files_and_folders(games: Path) -> None:
    root = games / "bfbc2"
    elsewhere = games.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "inner.bin").write_bytes(b"inner")
    (root / "data").mkdir()
    (root / "data" / "real.bin").write_bytes(b"real")
    (root / "data" / "linked-folder").symlink_to(elsewhere)
    (root / "linked-file.bin").symlink_to(games.parent / "outside.txt")
    paths = [f.path for f in DescriptorCache().describe(root, 64)]
    assert paths == ["bfbc2.eti", "data/real.bin", "version.ini"]


def refusal_message(games: Path, *args: object, **kw: object) -> str:
    with pytest.raises(PeerError) as err:
        gate(games, *args, **kw)  # type: ignore[arg-type]
    return err.value.message


def test_refusals_tell_the_asking_peer_why(games: Path) -> None:
    assert refusal_message(games, "bfbc2", active=frozenset({"bfbc2"})) == (
        "game bfbc2 has an operation in progress"
    )
    os.symlink(games / "bfbc2", games / "cnc4")
    assert refusal_message(games, "cnc4") == "game root cnc4 is a symlink and never served"
    os.symlink(games.parent / "outside.txt", games / "bfbc2" / "link.txt")
    assert refusal_message(games, "bfbc2", "link.txt") == "path 'link.txt' leaves the game root"
    (games / "bfbc2" / "version.ini").write_text("20240101\n")
    assert refusal_message(games, "bfbc2") == (
        "game bfbc2 is version 20240101, catalog wants 20250201"
    )
    (games / "bfbc2" / "version.ini").unlink()
    assert refusal_message(games, "bfbc2") == "game bfbc2 is not downloaded here"
    with pytest.raises(PeerError) as err:
        authorize_chunk(games, CATALOG, frozenset(), "secret", chunk(token="forged"))
    assert err.value.message == "bad data token"


def test_each_asker_gets_its_own_layout_of_the_same_bytes(games: Path) -> None:
    """The vote is on content: any source describes a root in the layout the asker names."""
    cache = DescriptorCache()
    small, large = cache.describe(games / "bfbc2", 64), cache.describe(games / "bfbc2", 128)
    archive = games / "bfbc2" / "bfbc2.eti"
    assert {f.chunk_size for f in small} == {64} and {f.chunk_size for f in large} == {128}
    assert small[0].chunks == hash_chunks(archive, 64)
    assert large[0].chunks == hash_chunks(archive, 128)


def test_only_the_latest_layouts_are_kept(games: Path) -> None:
    cache = DescriptorCache()
    for size in (64, 128, 256):
        cache.describe(games / "bfbc2", size)
    assert list(cache._layouts) == [128, 256]
    cache.describe(games / "bfbc2", 128)
    assert list(cache._layouts) == [256, 128], "asking again makes a layout the most recent"


def test_a_layout_too_fine_to_fit_a_reply_is_refused_before_hashing(
    games: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.truncate(games / "bfbc2" / "bfbc2.eti", 800_000)  # 200,000 chunks of 4, and version.ini
    monkeypatch.setattr("peer.transfer.serve.hash_chunks", lambda *_: pytest.fail("hashed"))
    with pytest.raises(PeerError) as refused:
        DescriptorCache().describe(games / "bfbc2", 4)
    assert refused.value.code == "not-servable" and "larger chunks" in refused.value.message
