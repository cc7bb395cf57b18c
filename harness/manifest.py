"""SHA-256 manifests of a game root, and a diff a person can read.

`scan_manifest` is self-contained on purpose: the Docker backend ships its source into the
container and runs it there with the image's python3, so both backends hash with one function.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

# Relative paths that are the receiver's own business and never part of a transfer.
NOT_TRANSFERRED = ("local", ".local.installing", ".local.backup")


def scan_manifest(root: str, skip: list[str]) -> dict[str, list[object]]:
    """Map every regular file under `root` (minus top-level `skip`) to [size, sha256]."""
    import hashlib
    import os

    result: dict[str, list[object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.isfile(full) or os.path.islink(full):
                continue
            digest = hashlib.sha256()
            with open(full, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            result[rel.replace(os.sep, "/")] = [os.path.getsize(full), digest.hexdigest()]
    return result


def remote_script(root: str, skip: list[str]) -> str:
    """Python source that prints the manifest of `root` as JSON, for `python3 -c`."""
    return (
        inspect.getsource(scan_manifest)
        + f"\nimport json\nprint(json.dumps(scan_manifest({root!r}, {skip!r})))\n"
    )


def scan_rar_members(unrar: str, archives: list[str]) -> dict[str, list[object]]:
    """Map every file member of `archives` to [size, sha256] of what `unrar p` prints for it."""
    import hashlib
    import subprocess

    result: dict[str, list[object]] = {}
    for archive in archives:
        listing = subprocess.run(
            [unrar, "lt", "-cfg-", archive], capture_output=True, text=True, check=True
        ).stdout
        members: list[dict[str, str]] = []
        for line in listing.splitlines():
            key, sep, value = line.strip().partition(": ")
            if sep and key == "Name":
                members.append({"Name": value})
            elif sep and members and key in ("Type", "Size"):
                members[-1][key] = value
        for member in members:
            if member.get("Type") != "File":
                continue
            name = member["Name"]
            printed = subprocess.run(
                [unrar, "p", "-inul", "-cfg-", archive, name], capture_output=True, check=True
            ).stdout
            if len(printed) != int(member["Size"]) or name in result:
                raise SystemExit(f"{archive}: {name}: {len(printed)} bytes or a duplicate")
            result[name] = [len(printed), hashlib.sha256(printed).hexdigest()]
    return result


def rar_members_script(unrar: str, archives: list[str]) -> str:
    """Python source that prints `scan_rar_members` of `archives` as JSON, for `python3 -c`."""
    return (
        inspect.getsource(scan_rar_members)
        + f"\nimport json\nprint(json.dumps(scan_rar_members({unrar!r}, {archives!r})))\n"
    )


@dataclass(frozen=True)
class Manifest:
    """The files of one game root: relative path -> (size, sha256)."""

    files: dict[str, tuple[int, str]]

    @classmethod
    def from_scan(cls, raw: dict[str, list[object]]) -> Manifest:
        return cls({k: (int(str(v[0])), str(v[1])) for k, v in raw.items()})

    def diff(self, other: Manifest) -> list[str]:
        """Readable differences, empty when equal: missing, extra and changed files."""
        lines = []
        for path in sorted(self.files.keys() | other.files.keys()):
            mine, theirs = self.files.get(path), other.files.get(path)
            if mine == theirs:
                continue
            if theirs is None:
                lines.append(f"only left:  {path} {mine}")
            elif mine is None:
                lines.append(f"only right: {path} {theirs}")
            else:
                lines.append(f"differs:    {path} left={mine} right={theirs}")
        return lines

    def __len__(self) -> int:
        return len(self.files)


def assert_same(left: Manifest, right: Manifest, what: str = "manifests") -> None:
    problems = left.diff(right)
    assert not problems, f"{what} differ:\n  " + "\n  ".join(problems)
    assert len(left) > 0, f"{what}: both are empty, nothing was compared"
