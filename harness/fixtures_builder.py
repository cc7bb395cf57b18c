"""Build deterministic game-root fixtures from declarative TOML specs.

Fixtures are generated rather than checked in: a 120 MB random RAR does not belong in git, and
a generator lets skew scenarios ask for stale versions or sparse multi-GiB files without copies.
Every byte is a pure function of the spec file, the catalog entries it uses and
``BUILDER_VERSION``, so two machines (and two xdist workers) produce identical fixtures, and a
multi-source download that validates by majority sees the same ``ggoo`` from alpha and bravo.

Spec schema (``fixtures/<name>.toml``; unknown keys are errors so typos cannot pass silently)::

    description = "free text"                 # optional

    [[games]]
    id = "alienswarm"                         # one games-root subdirectory per game
    version = "20250101"                      # optional: omit to stamp the catalog version
    sentinel = true                           # optional: false = no root version.ini
    files = [                                 # loose files in the game root
      { path = "notes.txt", text = "hello\\n" },
    ]

    [[games.archives]]                        # a RAR archive (renamed, e.g. ``.eti``)
    path = "alienswarm.eti"
    method = 0                                # rar -m0..-m5; 0 = stored (default)
    solid = false                             # rar -s; needs method >= 1 (rar ignores -s for -m0)
    entries = [
      { path = "payload/part-{i}.bin", random = "40MiB", count = 3 },
    ]

An entry (in ``files`` or ``entries``) has a relative ``path`` and exactly one content key:
``text`` (UTF-8, with ``eol = "lf" | "crlf"``), ``random`` (a size; seeded bytes, ``seed``
defaults to ``"<game>/<archive or ''>/<path>"``) or ``sparse`` (a size; a hole made with
truncate, loose files only). Sizes are integers or strings such as ``"512"``, ``"40MiB"``,
``"2GiB"``. ``count = N`` repeats the entry N times, formatting ``{i}`` (1..N) in ``path``,
``seed`` and ``text`` with ``str.format``.

Output: ``<cache>/<name>-<hash12>/`` is the games root (only game directories inside);
``<name>-<hash12>.json`` (manifest) and ``.lock`` sit beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from filelock import FileLock

# Bump whenever a change here alters fixture bytes, so stale cache entries are never reused.
BUILDER_VERSION = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC_DIR = REPO_ROOT / "fixtures"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "fixtures"
DEFAULT_CATALOG = REPO_ROOT / "peer" / "catalog.json"

# 2025-01-01T00:00:00Z: every file, directory and RAR entry carries this mtime.
FIXED_EPOCH = 1_735_689_600
FILE_MODE = 0o644
DIR_MODE = 0o755
BLOCK = 1 << 20
LOCK_TIMEOUT_S = 1800.0
_SEED_DOMAIN = b"lanpeer-fixture-v1\x00"

# Pinned rar switches. -cfg- ignores .rarrc and $RAR; -ma5 pins the format; -tsm1 stores only a
# 1 s mtime (no ctime/atime); -qo-/-oi-/-htc/-mt1 remove version- and machine-dependent defaults;
# -r- and -ds keep exactly the sorted file list we pass.
_RAR_SWITCHES = (
    "-cfg-",
    "-idq",
    "-y",
    "-ma5",
    "-mt1",
    "-qo-",
    "-oi-",
    "-htc",
    "-r-",
    "-ds",
    "-tsm1",
    "-tsc-",
    "-tsa-",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.+=,() -]*$")
_VERSION_RE = re.compile(r"^[0-9]{8}$")
_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}

EntryKind = Literal["text", "random", "sparse"]


class SpecError(ValueError):
    """A fixture spec is malformed; the message names the file and the offending key."""


@dataclass(frozen=True)
class EntrySpec:
    """One file, either loose in a game root or inside an archive."""

    path: str
    kind: EntryKind
    size: int
    seed: str | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class ArchiveSpec:
    """A RAR archive written to ``path`` in the game root; entries are sorted by path."""

    path: str
    method: int
    solid: bool
    entries: tuple[EntrySpec, ...]


@dataclass(frozen=True)
class GameSpec:
    """One ``<games>/<id>/`` directory."""

    id: str
    version: str | None
    version_from_catalog: bool
    sentinel: bool
    files: tuple[EntrySpec, ...]
    archives: tuple[ArchiveSpec, ...]


@dataclass(frozen=True)
class FixtureSpec:
    """A parsed spec file: a whole games root."""

    name: str
    description: str
    source: Path
    games: tuple[GameSpec, ...]

    def catalog_versions_used(self) -> dict[str, str]:
        """Catalog entries this fixture depends on (they feed the cache key)."""
        return {
            g.id: g.version for g in self.games if g.version_from_catalog and g.version is not None
        }

    def game(self, game_id: str) -> GameSpec:
        """Look a game up by ID."""
        for g in self.games:
            if g.id == game_id:
                return g
        raise KeyError(game_id)


# --------------------------------------------------------------------------- spec parsing


def _spec_file(name: str, spec_dir: Path | None) -> Path:
    if not _NAME_RE.match(name):
        raise SpecError(f"bad fixture name {name!r}")
    path = (spec_dir or DEFAULT_SPEC_DIR) / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no fixture spec {path}")
    return path


def load_catalog(catalog_path: Path | None = None) -> dict[str, str]:
    """Read the bundled catalog (game ID -> expected version) that stamps fixtures."""
    raw = json.loads((catalog_path or DEFAULT_CATALOG).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ValueError("catalog must map game ID strings to version strings")
    return dict(raw)


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed {sorted(allowed)}")


def _get(table: Mapping[str, Any], key: str, typ: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    if value is default:
        return value
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise SpecError(f"{where}: {key!r} must be {typ.__name__}, got {value!r}")
    return value


def parse_size(value: object, where: str = "size") -> int:
    """Turn ``4096``, ``"40MiB"`` or ``"2GiB"`` into bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise SpecError(f"{where}: negative size {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise SpecError(f"{where}: bad size {value!r} (use an int or e.g. '40MiB')")


def _check_path(path: str, where: str) -> str:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or not _SEGMENT_RE.match(p) for p in parts):
        raise SpecError(f"{where}: bad relative path {path!r}")
    return path


def _fmt(template: str, i: int | None, where: str) -> str:
    if i is None:
        return template
    try:
        return template.format(i=i)
    except (KeyError, IndexError, ValueError) as exc:
        raise SpecError(f"{where}: cannot format {template!r} with i={i}: {exc}") from exc


def _parse_entries(
    raw: object, game_id: str, container: str, in_archive: bool, where: str
) -> list[EntrySpec]:
    if not isinstance(raw, list):
        raise SpecError(f"{where}: expected a list of tables")
    out: list[EntrySpec] = []
    for n, item in enumerate(raw):
        w = f"{where}[{n}]"
        if not isinstance(item, dict):
            raise SpecError(f"{w}: expected a table")
        _check_keys(item, {"path", "text", "eol", "random", "sparse", "seed", "count"}, w)
        kinds = [k for k in ("text", "random", "sparse") if k in item]
        if len(kinds) != 1:
            raise SpecError(f"{w}: give exactly one of text / random / sparse")
        kind = cast(EntryKind, kinds[0])
        if kind == "sparse" and in_archive:
            raise SpecError(f"{w}: sparse files cannot go inside an archive")
        if "eol" in item and kind != "text":
            raise SpecError(f"{w}: 'eol' only applies to text")
        if "seed" in item and kind != "random":
            raise SpecError(f"{w}: 'seed' only applies to random")
        path_t = _get(item, "path", str, w, None)
        if path_t is None:
            raise SpecError(f"{w}: 'path' is required")
        count = _get(item, "count", int, w, None)
        if count is not None and (count < 1 or "{i" not in path_t):
            raise SpecError(f"{w}: count needs to be >= 1 and path must contain '{{i}}'")
        eol = _get(item, "eol", str, w, "lf")
        if eol not in ("lf", "crlf"):
            raise SpecError(f"{w}: eol must be 'lf' or 'crlf'")
        for i in range(1, count + 1) if count is not None else [None]:
            path = _check_path(_fmt(path_t, i, w), w)
            if kind == "text":
                text = _fmt(_get(item, "text", str, w, ""), i, w)
                if eol == "crlf":
                    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
                data = text.encode("utf-8")
                out.append(EntrySpec(path, "text", len(data), data=data))
            elif kind == "random":
                seed_t = _get(item, "seed", str, w, None)
                seed = _fmt(seed_t, i, w) if seed_t is not None else f"{game_id}/{container}/{path}"
                out.append(EntrySpec(path, "random", parse_size(item["random"], w), seed=seed))
            else:
                out.append(EntrySpec(path, "sparse", parse_size(item["sparse"], w)))
    return out


def _check_unique(paths: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    for p in sorted(paths):
        if p in seen:
            raise SpecError(f"{where}: duplicate path {p!r}")
        parts = p.split("/")
        for k in range(1, len(parts)):
            if "/".join(parts[:k]) in seen:
                raise SpecError(f"{where}: {p!r} lies under file {'/'.join(parts[:k])!r}")
        seen.add(p)


def _parse_game(raw: object, catalog: Mapping[str, str], where: str) -> GameSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a table")
    _check_keys(raw, {"id", "version", "sentinel", "files", "archives"}, where)
    game_id = _get(raw, "id", str, where, None)
    if game_id is None or not _NAME_RE.match(game_id):
        raise SpecError(f"{where}: 'id' is required and must match {_NAME_RE.pattern}")
    where = f"{where} ({game_id})"
    explicit = _get(raw, "version", str, where, None)
    if explicit is not None and not _VERSION_RE.match(explicit):
        raise SpecError(f"{where}: version must be 8 digits (YYYYMMDD), got {explicit!r}")
    sentinel = _get(raw, "sentinel", bool, where, True)
    version = explicit if explicit is not None else catalog.get(game_id)
    if sentinel and version is None:
        raise SpecError(f"{where}: not in the catalog; give an explicit version")
    if version is not None and not _VERSION_RE.match(version):
        raise SpecError(f"{where}: catalog version {version!r} is not 8 digits")

    files = _parse_entries(raw.get("files", []), game_id, "", False, f"{where}.files")
    archives: list[ArchiveSpec] = []
    raw_archives = raw.get("archives", [])
    if not isinstance(raw_archives, list):
        raise SpecError(f"{where}.archives: expected a list of tables")
    for n, a in enumerate(raw_archives):
        w = f"{where}.archives[{n}]"
        if not isinstance(a, dict):
            raise SpecError(f"{w}: expected a table")
        _check_keys(a, {"path", "method", "solid", "entries"}, w)
        apath = _check_path(_get(a, "path", str, w, ""), w)
        method = _get(a, "method", int, w, 0)
        solid = _get(a, "solid", bool, w, False)
        if not 0 <= method <= 5:
            raise SpecError(f"{w}: method must be 0..5")
        if solid and method == 0:
            raise SpecError(f"{w}: rar ignores -s with -m0; a solid archive needs method >= 1")
        entries = _parse_entries(a.get("entries", []), game_id, apath, True, f"{w}.entries")
        if not entries:
            raise SpecError(f"{w}: an archive needs at least one entry")
        _check_unique([e.path for e in entries], f"{w}.entries")
        archives.append(ArchiveSpec(apath, method, solid, tuple(sorted(entries, key=_key))))

    root_paths = [f.path for f in files] + [a.path for a in archives]
    if sentinel:
        root_paths.append("version.ini")
    _check_unique(root_paths, where)
    return GameSpec(
        id=game_id,
        version=version,
        version_from_catalog=explicit is None and version is not None,
        sentinel=sentinel,
        files=tuple(sorted(files, key=_key)),
        archives=tuple(sorted(archives, key=_key)),
    )


def _key(item: EntrySpec | ArchiveSpec) -> str:
    return item.path


def load_spec(
    name: str, *, spec_dir: Path | None = None, catalog_path: Path | None = None
) -> FixtureSpec:
    """Parse and validate ``<spec_dir>/<name>.toml``, resolving versions against the catalog."""
    path = _spec_file(name, spec_dir)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    _check_keys(raw, {"description", "games"}, str(path))
    catalog = load_catalog(catalog_path)
    raw_games = raw.get("games", [])
    if not isinstance(raw_games, list) or not raw_games:
        raise SpecError(f"{path}: needs at least one [[games]] table")
    games = [_parse_game(g, catalog, f"{path.name}: games[{n}]") for n, g in enumerate(raw_games)]
    _check_unique([g.id for g in games], f"{path.name}: game ids")
    description = _get(raw, "description", str, str(path), "")
    return FixtureSpec(name, description, path, tuple(sorted(games, key=lambda g: g.id)))


def spec_hash(name: str, *, spec_dir: Path | None = None, catalog_path: Path | None = None) -> str:
    """The 12-hex cache key: spec bytes + catalog entries used + BUILDER_VERSION."""
    return _hash_of(load_spec(name, spec_dir=spec_dir, catalog_path=catalog_path))


def _hash_of(spec: FixtureSpec) -> str:
    material = {
        "builder": BUILDER_VERSION,
        "name": spec.name,
        "spec_sha256": hashlib.sha256(spec.source.read_bytes()).hexdigest(),
        "catalog": spec.catalog_versions_used(),
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def list_specs(spec_dir: Path | None = None) -> list[str]:
    """Names of every spec in the spec dir, sorted."""
    return sorted(p.stem for p in (spec_dir or DEFAULT_SPEC_DIR).glob("*.toml"))


# --------------------------------------------------------------------------- building


def random_blocks(seed: str, size: int) -> Iterator[bytes]:
    """Seeded bytes in 1 MiB blocks (SHAKE-256 per block), identical on every platform."""
    prefix = _SEED_DOMAIN + seed.encode("utf-8") + b"\x00"
    for idx in range((size + BLOCK - 1) // BLOCK):
        n = min(BLOCK, size - idx * BLOCK)
        yield hashlib.shake_256(prefix + idx.to_bytes(8, "big")).digest(n)


def _pin(path: Path, mode: int) -> None:
    os.chmod(path, mode)
    os.utime(path, ns=(FIXED_EPOCH * 10**9, FIXED_EPOCH * 10**9), follow_symlinks=False)


def _write_entry(base: Path, entry: EntrySpec) -> None:
    target = base / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as fh:
        if entry.kind == "text":
            fh.write(entry.data or b"")
        elif entry.kind == "random":
            assert entry.seed is not None
            for block in random_blocks(entry.seed, entry.size):
                fh.write(block)
        else:
            fh.truncate(entry.size)
    _pin(target, FILE_MODE)


def _rar_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAR", None)
    return env


def _run_rar(stage: Path, archive: Path, method: int, solid: bool, members: list[str]) -> None:
    cmd = ["rar", "a", *_RAR_SWITCHES, f"-m{method}", "-s" if solid else "-s-"]
    if method > 0:
        cmd.append("-md4m")  # the default dictionary differs between rar releases
    cmd += ["--", str(archive), *members]
    proc = subprocess.run(cmd, cwd=stage, env=_rar_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rar failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    test = subprocess.run(
        ["rar", "t", "-cfg-", "-idq", str(archive)], env=_rar_env(), capture_output=True, text=True
    )
    if test.returncode != 0:
        raise RuntimeError(f"rar t failed on {archive}: {test.stdout}{test.stderr}")


def _build_archive(game_dir: Path, stage: Path, archive: ArchiveSpec) -> None:
    """Stage entries with pinned mtimes/modes, archive them in sorted order, move into place."""
    src = stage / "src"
    shutil.rmtree(stage, ignore_errors=True)
    src.mkdir(parents=True)
    for entry in archive.entries:
        _write_entry(src, entry)
    out = stage / "out.rar"
    _run_rar(src, out, archive.method, archive.solid, [e.path for e in archive.entries])
    target = game_dir / archive.path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out, target)
    _pin(target, FILE_MODE)
    shutil.rmtree(stage)


def _build_games_root(spec: FixtureSpec, root: Path, stage: Path) -> None:
    """Write every game into ``root``; the sentinel goes last, as a real download would."""
    root.mkdir(parents=True)
    for game in spec.games:
        game_dir = root / game.id
        game_dir.mkdir()
        for entry in game.files:
            _write_entry(game_dir, entry)
        for n, archive in enumerate(game.archives):
            _build_archive(game_dir, stage / game.id / str(n), archive)
        if game.sentinel:
            assert game.version is not None
            data = f"{game.version}\n".encode()
            _write_entry(game_dir, EntrySpec("version.ini", "text", len(data), data=data))
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        _pin(Path(dirpath), DIR_MODE)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(8 * BLOCK)  # reused: fresh 8 MiB reads page-fault heavily on 2 GiB files
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def compute_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """``relative path -> {size, sha256}`` for every regular file under a games root."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = {
                "size": p.stat().st_size,
                "sha256": _sha256_file(p),
            }
    return out


def _rar_version() -> str:
    try:
        proc = subprocess.run(["rar", "-iver"], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return proc.stdout.strip() or "unknown"


def _clean_stale(cache: Path, stem: str) -> None:
    """Remove temp dirs left by a crashed build of this exact fixture (we hold its lock)."""
    for stale in cache.glob(f".tmp-{stem}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def ensure_fixture(
    name: str,
    *,
    spec_dir: Path | None = None,
    cache_dir: Path | None = None,
    catalog_path: Path | None = None,
) -> tuple[Path, bool]:
    """Like :func:`fixture_path` but also says whether this call had to build."""
    spec = load_spec(name, spec_dir=spec_dir, catalog_path=catalog_path)
    cache = cache_dir or DEFAULT_CACHE_DIR
    stem = f"{name}-{_hash_of(spec)}"
    final = cache / stem
    if final.is_dir():
        return final, False
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"{stem}.lock"), timeout=LOCK_TIMEOUT_S):
        if final.is_dir():
            return final, False
        _clean_stale(cache, stem)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{stem}-", dir=cache))
        try:
            root = tmp / "root"
            _build_games_root(spec, root, tmp / "stage")
            manifest = compute_manifest(root)
            os.rename(root, final)  # atomic: the final name appears only when complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        meta = {
            "name": name,
            "hash": stem.rsplit("-", 1)[1],
            "builder_version": BUILDER_VERSION,
            "spec": str(spec.source),
            "rar_version": _rar_version(),
            "build_seconds": round(time.monotonic() - started, 3),
            "versions": {g.id: g.version for g in spec.games},
            "files": manifest,
        }
        _write_json_atomic(cache / f"{stem}.json", meta)
    return final, True


def fixture_path(
    name: str,
    *,
    spec_dir: Path | None = None,
    cache_dir: Path | None = None,
    catalog_path: Path | None = None,
) -> Path:
    """Build ``name`` once (per spec hash, across processes) and return its games root.

    Treat the result as read-only: it is shared by every test; copy it before mutating.
    """
    path, _built = ensure_fixture(
        name, spec_dir=spec_dir, cache_dir=cache_dir, catalog_path=catalog_path
    )
    return path


def fixture_tar(name: str) -> Path:
    """A tar of the fixture's games root (next to it, made once under a lock), which the
    Docker backend streams into every container that needs it (`put_archive`)."""
    root = fixture_path(name)
    tar_path = root.with_suffix(".tar")
    with FileLock(str(tar_path) + ".lock"):
        if not tar_path.exists():
            tmp = tar_path.with_suffix(".tar.tmp")
            with tarfile.open(tmp, "w") as tar:
                for entry in sorted(root.iterdir()):
                    tar.add(entry, arcname=entry.name)
            tmp.replace(tar_path)
    return tar_path


def fixture_manifest(
    name: str,
    *,
    spec_dir: Path | None = None,
    cache_dir: Path | None = None,
    catalog_path: Path | None = None,
) -> dict[str, str]:
    """``relative path -> sha256`` of the built fixture, for exact-transfer checks (S13)."""
    root = fixture_path(name, spec_dir=spec_dir, cache_dir=cache_dir, catalog_path=catalog_path)
    meta_path = root.with_name(f"{root.name}.json")
    try:
        files = json.loads(meta_path.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError):
        files = compute_manifest(root)
    return {rel: str(info["sha256"]) for rel, info in files.items()}


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Build the named fixtures (all by default) and print each path and build time."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.fixtures_builder",
        description=("Build deterministic fixtures into the cache; a cached fixture is reused."),
    )
    parser.add_argument("names", nargs="*", help="fixture names (default: every spec)")
    parser.add_argument("--spec-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--catalog", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.names or list_specs(args.spec_dir)
    if not names:
        print("no fixture specs found", file=sys.stderr)
        return 1
    for name in names:
        started = time.monotonic()
        path, built = ensure_fixture(
            name, spec_dir=args.spec_dir, cache_dir=args.cache_dir, catalog_path=args.catalog
        )
        elapsed = time.monotonic() - started
        print(f"{name}\t{path}\t{'built' if built else 'cached'} in {elapsed:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
