"""requirements.lock: every Python package the project installs, pinned with its hashes.

One lock (written by `./lab lock`, which runs `uv pip compile`) serves three installers: the
setup script syncs `.venv` to it, CI runs on that venv, and the peer image installs the runtime
part of it, so a fresh machine gets exactly what was tested, whatever the registry now holds.

This module reads the lock (pure: text in, values out) and answers the two questions the lab
asks of it: which locked packages does the peer itself need at run time (the image's subset),
and does an installed environment hold exactly the lock (`tests/test_lock.py`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PROJECT = "lanpeer"

_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?:\s*;\s*(?P<marker>.+?))?$"
)


@dataclass(frozen=True)
class Locked:
    """One pinned package: `name==version ; marker` and its `--hash` options."""

    name: str  # canonical (PEP 503)
    version: str
    marker: str | None
    hashes: tuple[str, ...]
    text: str  # the entry as written, continuation lines joined, comments dropped

    def applies(self, environment: Mapping[str, str] | None = None) -> bool:
        """True if this entry is installed in `environment` (default: this interpreter's)."""
        return self.marker is None or Marker(self.marker).evaluate(dict(environment or {}))


class LockError(ValueError):
    """The lock is malformed, or does not cover what the project asks for."""


def parse(text: str) -> dict[str, Locked]:
    """The entries of a hash-pinned requirements file, by canonical name."""
    entries: dict[str, Locked] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        logical.append(line.strip().removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        entry = _entry(logical)
        logical = []
        if entry.name in entries:
            raise LockError(f"{entry.name} is locked twice")
        entries[entry.name] = entry
    if logical:
        raise LockError("the lock ends in a continuation line")
    return entries


def _entry(parts: list[str]) -> Locked:
    head, options = parts[0], parts[1:]
    hashes: list[str] = []
    for option in options:
        key, _, value = option.partition("=")
        if key != "--hash" or not value.startswith("sha256:"):
            raise LockError(f"unexpected option {option!r} in the entry for {head!r}")
        hashes.append(value)
    match = _ENTRY.match(head)
    if match is None:
        raise LockError(f"not an exact pin: {head!r}")
    if not hashes:
        raise LockError(f"{head!r} has no --hash")
    return Locked(
        name=canonicalize_name(match["name"]),
        version=match["version"],
        marker=match["marker"],
        hashes=tuple(hashes),
        text=" \\\n    ".join(parts),
    )


def read(path: Path = LOCK) -> dict[str, Locked]:
    return parse(path.read_text("utf-8"))


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """The project's own requirement strings, by where they are declared (runtime, extras,
    dependency groups): what the lock must satisfy."""
    data = tomllib.loads(pyproject.read_text("utf-8"))
    project = data["project"]
    wanted = {"runtime": list(project.get("dependencies", []))}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        wanted[f"extra {extra}"] = list(reqs)
    for group, reqs in data.get("dependency-groups", {}).items():
        wanted[f"group {group}"] = [r for r in reqs if isinstance(r, str)]
    return wanted


def unsatisfied(lock: Mapping[str, Locked], wanted: Mapping[str, list[str]]) -> list[str]:
    """Each declared requirement the lock does not pin, or pins outside its range."""
    problems = []
    for where, reqs in wanted.items():
        for text in reqs:
            req = Requirement(text)
            entry = lock.get(canonicalize_name(req.name))
            if entry is None:
                problems.append(f"{where}: {text} is not in the lock")
            elif not req.specifier.contains(entry.version, prereleases=True):
                problems.append(f"{where}: {text} but the lock pins {entry.version}")
    return problems


def runtime_names(roots: Iterable[str]) -> set[str]:
    """The installed distributions that `roots` (requirement strings) need at run time,
    transitively, with markers evaluated for this interpreter: the peer image's packages.

    Read from installed metadata, which setup made equal to the lock (tests/test_lock.py)."""
    todo = [(Requirement(r), "") for r in roots]
    seen: set[str] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted_extra in req.extras:
            # An extra of a package already seen can add requirements: walk it again for them.
            todo.extend((Requirement(r), wanted_extra) for r in _requires(name))
        if name in seen:
            continue
        seen.add(name)
        todo.extend((Requirement(r), "") for r in _requires(name))
    return seen


def _requires(name: str) -> list[str]:
    try:
        return metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        raise LockError(f"{name} is not installed: run scripts/setup.sh") from None


def runtime_lock(lock: Mapping[str, Locked], pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The runtime subset of the lock as a hash-pinned requirements file (the image installs
    it with `pip --require-hashes`)."""
    names = runtime_names(project_requirements(pyproject)["runtime"])
    missing = sorted(names - lock.keys())
    if missing:
        raise LockError(f"not in requirements.lock: {', '.join(missing)}; run ./lab lock")
    return "".join(f"{lock[n].text}\n" for n in sorted(names) if lock[n].applies())


def installed() -> dict[str, str]:
    """Every distribution in this interpreter's environment, by canonical name, but the
    project itself (installed from the checkout, not from the lock)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name != PROJECT:
            found[name] = dist.version
    return found


def drift(lock: Mapping[str, Locked], have: Mapping[str, str]) -> list[str]:
    """How an environment differs from the lock: missing, other versions, not locked."""
    want = {name: e.version for name, e in lock.items() if e.applies()}
    problems = [f"{n}: locked {v}, not installed" for n, v in want.items() if n not in have]
    problems += [
        f"{n}: locked {v}, installed {have[n]}"
        for n, v in want.items()
        if n in have and have[n] != v
    ]
    problems += [f"{n} {v}: installed but not locked" for n, v in have.items() if n not in want]
    return sorted(problems)


def main() -> int:
    """`python -m harness.lockfile`: exit 1, naming each difference, unless this environment
    holds exactly the lock and the lock satisfies pyproject.toml."""
    lock = read()
    problems = unsatisfied(lock, project_requirements()) + drift(lock, installed())
    try:
        metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        problems.append(f"{PROJECT} itself is not installed (pip install -e .)")
    for problem in problems:
        print(f"[lock] {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
