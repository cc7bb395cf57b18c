"""docs/ARCHITECTURE.md names every module of `peer/` and `harness/` and no module that is gone,
and its dependency diagram draws only real modules and the whole transfer wing, so the map a
newcomer reads first cannot drift from the house (as tests/test_readme.py does for events and
codes)."""

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


def test_the_map_names_no_module_that_is_gone() -> None:
    """A row for a module that moved or was merged away (as `serving.py` was) is drift too."""
    found = {p.name for p in ROOT.glob("*.py")}  # the root conftest.py
    for package in ("peer", "harness"):
        files = [p.relative_to(ROOT / package).as_posix() for p in (ROOT / package).rglob("*.py")]
        found |= set(files) | {Path(rel).name for rel in files}
    assert sorted(NAMED - found) == []


DIAGRAM = DOC[DOC.index("cli ──> node") :].split("```")[0]


def test_the_dependency_diagram_names_modules_that_exist() -> None:
    """Each name the diagram draws outside its asides, and each `transfer/...` name anywhere
    in it, is a module of peer/."""
    bare = re.sub(r"\([^)]*\)", "", DIAGRAM).replace("everything above", "")
    drawn = set(re.findall(r"[a-z_]+(?:/[a-z_]+)?", bare))
    drawn |= set(re.findall(r"transfer/[a-z_]+", DIAGRAM))
    assert sorted(m for m in drawn if not (ROOT / "peer" / f"{m}.py").is_file()) == []


def test_the_dependency_diagram_draws_the_whole_transfer_wing() -> None:
    wing = {f"transfer/{Path(rel).stem}" for rel in modules("peer") if rel.startswith("transfer/")}
    assert sorted(wing - set(re.findall(r"transfer/[a-z_]+", DIAGRAM))) == []
