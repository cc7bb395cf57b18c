"""Unit tests for harness.fixtures_builder, on tiny temporary specs (never the 120 MB alpha)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import fixtures_builder as fb

needs_rar = pytest.mark.skipif(
    shutil.which("rar") is None, reason="rar is not installed (run scripts/setup.sh)"
)
needs_unrar = pytest.mark.skipif(
    shutil.which("unrar") is None, reason="unrar is not installed (run scripts/setup.sh)"
)

CATALOG = {"tinygame": "20250101", "solidgame": "20260501", "loosegame": "20250201"}

TINY_SPEC = """\
description = "tiny fixture for unit tests"

[[games]]
id = "tinygame"
files = [
  { path = "notes.txt", text = "hello\\n" },
  { path = "big.eti", sparse = "3MiB" },
]

[[games.archives]]
path = "tinygame.eti"
entries = [
  { path = "data/payload.bin", random = "70KiB" },
  { path = "engine/steam_settings/SmartSteamEmu.ini", eol = "crlf", text = \"\"\"[Settings]
PersonaName = stub
Language = english
\"\"\" },
  { path = "bin/a.bin", random = 1000, seed = "fixed-seed" },
]

[[games]]
id = "loosegame"
version = "20240101"
files = [
  { path = "data/file-{i:02d}.bin", random = 256, count = 20 },
]

[[games]]
id = "solidgame"

[[games.archives]]
path = "solidgame.eti"
method = 3
solid = true
entries = [
  { path = "bin/solid-payload.bin", text = "solid payload\\n" },
  { path = "data/solid-assets.dat", text = "solid assets\\n" },
]

[[games.archives]]
path = "z-second.eti"
entries = [
  { path = "order/second.txt", text = "second\\n" },
]
"""


@pytest.fixture()
def lab(tmp_path: Path) -> dict[str, Path]:
    """A spec dir holding ``tiny.toml``, a private catalog and an empty cache dir."""
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "tiny.toml").write_text(TINY_SPEC, encoding="utf-8")
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG), encoding="utf-8")
    return {"spec_dir": spec_dir, "catalog_path": catalog, "cache_dir": tmp_path / "cache"}


def _sha_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _build(lab: dict[str, Path], cache: Path | None = None) -> Path:
    return fb.fixture_path(
        "tiny",
        spec_dir=lab["spec_dir"],
        catalog_path=lab["catalog_path"],
        cache_dir=cache or lab["cache_dir"],
    )


# ------------------------------------------------------------------ spec parsing (no rar needed


def test_spec_parses_with_sorted_entries_and_expansion(lab: dict[str, Path]) -> None:
    spec = fb.load_spec("tiny", spec_dir=lab["spec_dir"], catalog_path=lab["catalog_path"])
    assert [g.id for g in spec.games] == ["loosegame", "solidgame", "tinygame"]
    tiny = spec.game("tinygame")
    assert [e.path for e in tiny.archives[0].entries] == [
        "bin/a.bin",
        "data/payload.bin",
        "engine/steam_settings/SmartSteamEmu.ini",
    ]
    ini = tiny.archives[0].entries[2]
    assert ini.data == b"[Settings]\r\nPersonaName = stub\r\nLanguage = english\r\n"
    loose = spec.game("loosegame")
    assert [f.path for f in loose.files][:2] == ["data/file-01.bin", "data/file-02.bin"]
    assert len(loose.files) == 20
    assert len({f.seed for f in loose.files}) == 20
    assert [a.path for a in spec.game("solidgame").archives] == ["solidgame.eti", "z-second.eti"]


def test_version_stamping_source(lab: dict[str, Path]) -> None:
    spec = fb.load_spec("tiny", spec_dir=lab["spec_dir"], catalog_path=lab["catalog_path"])
    assert spec.game("tinygame").version == "20250101"
    assert spec.game("tinygame").version_from_catalog
    assert spec.game("loosegame").version == "20240101"  # explicit beats catalog 20250201
    assert not spec.game("loosegame").version_from_catalog
    assert spec.catalog_versions_used() == {"tinygame": "20250101", "solidgame": "20260501"}


def test_hash_tracks_used_catalog_entries_only(lab: dict[str, Path]) -> None:
    kw = {"spec_dir": lab["spec_dir"], "catalog_path": lab["catalog_path"]}
    before = fb.spec_hash("tiny", **kw)
    assert len(before) == 12
    catalog = dict(CATALOG, loosegame="29990101", unrelated="20200101")  # explicit/unused
    lab["catalog_path"].write_text(json.dumps(catalog), encoding="utf-8")
    assert fb.spec_hash("tiny", **kw) == before
    catalog["tinygame"] = "20300101"
    lab["catalog_path"].write_text(json.dumps(catalog), encoding="utf-8")
    assert fb.spec_hash("tiny", **kw) != before


def test_hash_tracks_spec_bytes_and_builder_version(
    lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"spec_dir": lab["spec_dir"], "catalog_path": lab["catalog_path"]}
    before = fb.spec_hash("tiny", **kw)
    monkeypatch.setattr(fb, "BUILDER_VERSION", "test-bump")
    assert fb.spec_hash("tiny", **kw) != before
    monkeypatch.undo()
    (lab["spec_dir"] / "tiny.toml").write_text(TINY_SPEC + "\n# comment\n", encoding="utf-8")
    assert fb.spec_hash("tiny", **kw) != before


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "../x", text = "" }]', "bad relative"),
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "-x", text = "" }]', "bad relative"),
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "a", text = "", random = 1 }]', "one of"),
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "a", txt = "" }]', "unknown key"),
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "version.ini", text = "" }]', "duplicate"),
        ('[[games]]\nid = "tinygame"\nversion = "2025-01-01"', "8 digits"),
        ('[[games]]\nid = "mystery-game"', "not in the catalog"),
        (
            '[[games]]\nid = "tinygame"\n[[games.archives]]\npath = "a.eti"\nsolid = true\n'
            'entries = [{ path = "x", text = "" }]',
            "method >= 1",
        ),
        (
            '[[games]]\nid = "tinygame"\n[[games.archives]]\npath = "a.eti"\n'
            'entries = [{ path = "x", sparse = "1MiB" }]',
            "sparse",
        ),
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "f", random = 1, count = 2 }]', "{i}"),
        ('[[games]]\nid = "tinygame"\nfiles = [{ path = "f", random = "1 GB" }]', "bad size"),
    ],
)
def test_bad_specs_are_rejected(lab: dict[str, Path], snippet: str, message: str) -> None:
    (lab["spec_dir"] / "bad.toml").write_text(snippet + "\n", encoding="utf-8")
    with pytest.raises(fb.SpecError, match=message.replace("{", r"\{").replace("}", r"\}")):
        fb.load_spec("bad", spec_dir=lab["spec_dir"], catalog_path=lab["catalog_path"])


def test_sentinel_false_allows_a_custom_version_ini(lab: dict[str, Path]) -> None:
    (lab["spec_dir"] / "nosentinel.toml").write_text(
        '[[games]]\nid = "mystery-game"\nsentinel = false\n'
        'files = [{ path = "version.ini", text = "garbage" }]\n',
        encoding="utf-8",
    )
    spec = fb.load_spec("nosentinel", spec_dir=lab["spec_dir"], catalog_path=lab["catalog_path"])
    assert spec.game("mystery-game").version is None
    assert spec.catalog_versions_used() == {}


def test_random_blocks_are_stable() -> None:
    data = b"".join(fb.random_blocks("seed", (1 << 20) + 5))
    assert len(data) == (1 << 20) + 5
    # A shorter stream is a prefix of a longer one with the same seed.
    assert b"".join(fb.random_blocks("seed", 100)) == data[:100]
    # Pinned so an accidental generator change cannot slip through unnoticed.
    assert (
        hashlib.sha256(data).hexdigest()
        == hashlib.sha256(
            b"".join(
                hashlib.shake_256(b"lanpeer-fixture-v1\x00seed\x00" + i.to_bytes(8, "big")).digest(
                    n
                )
                for i, n in ((0, 1 << 20), (1, 5))
            )
        ).hexdigest()
    )


def test_parse_size_units() -> None:
    assert fb.parse_size(7) == 7
    assert fb.parse_size("40MiB") == 40 << 20
    assert fb.parse_size("2GiB") == 2 << 30
    with pytest.raises(fb.SpecError):
        fb.parse_size(True)


# ------------------------------------------------------------------ checked-in specs


def test_checked_in_specs_parse() -> None:
    names = fb.list_specs()
    assert {"fixture-alpha", "fixture-bravo"} <= set(names)
    for name in names:
        fb.load_spec(name)


def test_alpha_and_bravo_share_identical_ggoo() -> None:
    alpha = fb.load_spec("fixture-alpha")
    bravo = fb.load_spec("fixture-bravo")
    assert alpha.game("ggoo") == bravo.game("ggoo")


def test_mesh_fixtures_share_identical_css_and_mesh_c_has_none() -> None:
    """X07's fan-out: css has 16 agreeing sources (mesh-a and mesh-b), mesh-c none."""
    a, b, c = (fb.load_spec(f"fixture-mesh-{x}") for x in "abc")
    assert a.game("css") == b.game("css")
    assert [f.size for f in a.game("css").files] == [8 << 20]
    assert "css" not in {g.id for g in c.games}


def test_checked_in_fixture_shapes() -> None:
    alpha = fb.load_spec("fixture-alpha")
    assert [g.id for g in alpha.games] == ["alienswarm", "bf1942", "ggoo"]
    swarm = alpha.game("alienswarm")
    (archive,) = swarm.archives
    assert archive.path == "alienswarm.eti" and archive.method == 0 and not archive.solid
    assert [e.size for e in archive.entries] == [40 << 20] * 3
    assert [f.path for f in swarm.files] == ["notes.txt"]
    bravo = fb.load_spec("fixture-bravo")
    assert [g.id for g in bravo.games] == ["bfbc2", "cnc4", "cnctw", "ggoo"]
    (cnctw,) = bravo.game("cnctw").archives
    assert [e.path for e in cnctw.entries] == ["bin/cnctw-payload.bin", "data/cnctw-assets.dat"]
    assert sum(e.size for e in cnctw.entries) == 3_145_728


def test_streamed_install_fixture_shapes() -> None:
    (solid,) = fb.load_spec("fixture-solid").game("cnctw").archives
    assert solid.path == "cnctw.eti" and solid.method >= 1 and solid.solid  # S41
    assert [e.path for e in solid.entries][:1] == ["bin/cnctw-payload.bin"]
    multi = fb.load_spec("fixture-multi").game("cnctw")  # S47: archives in sorted name order
    assert [(a.path, [e.path for e in a.entries]) for a in multi.archives] == [
        ("a-first.eti", ["order/first.txt", "order/tail-of-first.txt"]),
        ("b-second.eti", ["order/second.txt"]),
    ]


# ------------------------------------------------------------------ building (needs rar)


@needs_rar
def test_build_is_deterministic(
    lab: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(lab, tmp_path / "cache-a")
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # RAR4 stored local time; RAR5 must not care
    old_umask = os.umask(0o077)
    try:
        second = _build(lab, tmp_path / "cache-b")
    finally:
        os.umask(old_umask)
    assert first != second
    a, b = _sha_tree(first), _sha_tree(second)
    assert a == b
    assert len(a) == 4 + 21 + 3  # tinygame, loosegame (20 + sentinel), solidgame
    for path in (first, second):
        assert {p.stat().st_mode & 0o777 for p in path.rglob("*") if p.is_file()} == {0o644}


@needs_rar
def test_games_root_holds_only_game_dirs(lab: dict[str, Path]) -> None:
    root = _build(lab)
    assert sorted(p.name for p in root.iterdir()) == ["loosegame", "solidgame", "tinygame"]
    assert all(p.is_dir() for p in root.iterdir())
    assert (root.parent / f"{root.name}.json").is_file()
    key = fb.spec_hash("tiny", spec_dir=lab["spec_dir"], catalog_path=lab["catalog_path"])
    assert root.name == f"tiny-{key}"


@needs_rar
def test_version_ini_stamping(lab: dict[str, Path]) -> None:
    root = _build(lab)
    assert (root / "tinygame" / "version.ini").read_bytes() == b"20250101\n"  # catalog
    assert (root / "solidgame" / "version.ini").read_bytes() == b"20260501\n"  # catalog
    assert (root / "loosegame" / "version.ini").read_bytes() == b"20240101\n"  # explicit


@needs_rar
def test_loose_and_sparse_files(lab: dict[str, Path]) -> None:
    root = _build(lab)
    assert (root / "tinygame" / "notes.txt").read_bytes() == b"hello\n"
    big = root / "tinygame" / "big.eti"
    assert big.stat().st_size == 3 << 20
    assert big.stat().st_blocks * 512 < (1 << 20)  # a hole, not 3 MiB of written zeros
    files = sorted((root / "loosegame" / "data").iterdir())
    assert len(files) == 20 and all(f.stat().st_size == 256 for f in files)
    assert len({f.read_bytes() for f in files}) == 20


@needs_rar
@needs_unrar
def test_archive_verifies_and_keeps_sorted_entries_and_crlf(lab: dict[str, Path]) -> None:
    archive = _build(lab) / "tinygame" / "tinygame.eti"
    assert subprocess.run(["unrar", "t", "-idq", str(archive)]).returncode == 0
    listing = subprocess.run(
        ["unrar", "lb", str(archive)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing == ["bin/a.bin", "data/payload.bin", "engine/steam_settings/SmartSteamEmu.ini"]
    ini = subprocess.run(
        ["unrar", "p", "-inul", str(archive), "engine/steam_settings/SmartSteamEmu.ini"],
        capture_output=True,
        check=True,
    ).stdout
    assert ini == b"[Settings]\r\nPersonaName = stub\r\nLanguage = english\r\n"
    payload = subprocess.run(
        ["unrar", "p", "-inul", str(archive), "bin/a.bin"], capture_output=True, check=True
    ).stdout
    assert payload == b"".join(fb.random_blocks("fixed-seed", 1000))
    technical = subprocess.run(
        ["unrar", "lt", str(archive)], capture_output=True, text=True, check=True
    ).stdout
    assert "2025-01-01 00:00:00" in technical
    assert "-m0" in technical


@needs_rar
@needs_unrar
def test_solid_flag_honoured(lab: dict[str, Path]) -> None:
    root = _build(lab)

    def details(archive: Path) -> str:
        out = subprocess.run(
            ["unrar", "lt", "-cfg-", str(archive)], capture_output=True, text=True, check=True
        ).stdout
        return next(line for line in out.splitlines() if line.startswith("Details:"))

    assert details(root / "solidgame" / "solidgame.eti") == "Details: RAR 5, solid"
    assert details(root / "solidgame" / "z-second.eti") == "Details: RAR 5"
    assert details(root / "tinygame" / "tinygame.eti") == "Details: RAR 5"


@needs_rar
def test_cache_hit_does_not_rebuild(lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    first, built = fb.ensure_fixture(
        "tiny",
        spec_dir=lab["spec_dir"],
        catalog_path=lab["catalog_path"],
        cache_dir=lab["cache_dir"],
    )
    assert built
    inode = first.stat().st_ino

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("rebuilt a cached fixture")

    monkeypatch.setattr(fb, "_build_games_root", boom)
    second, built = fb.ensure_fixture(
        "tiny",
        spec_dir=lab["spec_dir"],
        catalog_path=lab["catalog_path"],
        cache_dir=lab["cache_dir"],
    )
    assert not built and second == first and second.stat().st_ino == inode


@needs_rar
def test_concurrent_callers_build_once(
    lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    guard = threading.Lock()
    real = fb._build_games_root

    def counting(*args: object, **kwargs: object) -> None:
        nonlocal calls
        with guard:
            calls += 1
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fb, "_build_games_root", counting)
    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(lambda _: _build(lab), range(4)))
    assert calls == 1
    assert len(set(paths)) == 1


@needs_rar
def test_failure_mid_build_leaves_nothing_complete(
    lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_rar(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated rar crash")

    monkeypatch.setattr(fb, "_run_rar", broken_rar)
    with pytest.raises(RuntimeError, match="simulated"):
        _build(lab)
    cache = lab["cache_dir"]
    leftovers = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    monkeypatch.undo()
    root = _build(lab)
    assert (root / "tinygame" / "version.ini").is_file()


@needs_rar
def test_killed_build_leaves_no_complete_dir_and_is_recovered(lab: dict[str, Path]) -> None:
    # A real SIGKILL half-way (after loose files, at the first rar call): no cleanup code runs.
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from harness import fixtures_builder as fb
        fb._run_rar = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        fb.fixture_path("tiny", spec_dir=Path({str(lab["spec_dir"])!r}),
                        catalog_path=Path({str(lab["catalog_path"])!r}),
                        cache_dir=Path({str(lab["cache_dir"])!r}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=fb.REPO_ROOT)
    assert proc.returncode == -9
    cache = lab["cache_dir"]
    key = fb.spec_hash("tiny", spec_dir=lab["spec_dir"], catalog_path=lab["catalog_path"])
    assert not (cache / f"tiny-{key}").exists()
    assert not (cache / f"tiny-{key}.json").exists()
    stale = list(cache.glob(".tmp-*"))
    assert stale and any(stale[0].rglob("file-01.bin"))  # it really died half-way
    root = _build(lab)
    assert _sha_tree(root)["tinygame/version.ini"]
    assert list(cache.glob(".tmp-*")) == []


@needs_rar
def test_manifest_matches_tree(lab: dict[str, Path]) -> None:
    root = _build(lab)
    manifest = fb.fixture_manifest(
        "tiny",
        spec_dir=lab["spec_dir"],
        catalog_path=lab["catalog_path"],
        cache_dir=lab["cache_dir"],
    )
    assert manifest == _sha_tree(root)


@needs_rar
def test_cli_builds_and_reports(lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--spec-dir",
        str(lab["spec_dir"]),
        "--catalog",
        str(lab["catalog_path"]),
        "--cache-dir",
        str(lab["cache_dir"]),
    ]
    assert fb.main(args) == 0
    assert fb.main([*args, "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "\tbuilt in " in lines[0] and "\tcached in " in lines[1]
    assert lines[0].split("\t")[1] == str(_build(lab))
