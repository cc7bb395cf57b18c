"""docs/ARCHITECTURE.md names every module of `peer/` and `harness/`, so the map a newcomer
reads first cannot drift from the house (as tests/test_readme.py does for events and codes)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
NAMED = set(re.findall(r"`([A-Za-z0-9_/]+\.py)`", DOC))


def modules(package: str) -> list[str]:
    base = ROOT / package
    return sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    )


def test_every_module_is_on_the_map() -> None:
    missing = [
        f"{package}/{rel}"
        for package in ("peer", "harness")
        for rel in modules(package)
        if rel not in NAMED and Path(rel).name not in NAMED
    ]
    assert missing == [], "add these to docs/ARCHITECTURE.md's tables"
