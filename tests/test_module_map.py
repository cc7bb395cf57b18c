"""The shape of peer/: small modules, no import cycles, and no part that imports the node."""

from __future__ import annotations

import ast
from pathlib import Path

PEER = Path(__file__).parents[1] / "peer"
MAX_LINES = 350
# The wire vocabulary is declared in one file on purpose (as aioquic's quic/events.py is): one
# place to read every message. It may grow a little past the rest, not without bound.
LIMITS = {"peer.protocol": 400}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PEER.rglob("*.py")):
        parts = path.relative_to(PEER.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """The peer modules `path` imports (at any depth in the file)."""
    known = set(modules())
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    return {name: imports(path) - {name} for name, path in modules().items()}


def test_no_module_is_long() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    over = {n: lines for n, lines in long.items() if lines > LIMITS.get(n, MAX_LINES)}
    assert over == {}


def test_only_the_entry_point_imports_the_node() -> None:
    importers = {name for name, deps in graph().items() if "peer.node" in deps}
    assert importers == {"peer.cli"}


def test_the_node_stays_thin() -> None:
    assert len((PEER / "node.py").read_text().splitlines()) <= 250


def test_there_are_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(edges[name]):
            assert state.get(dep) != "open", " -> ".join([*path, name, dep])
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])


def test_the_pure_core_does_no_io() -> None:
    pure = ["protocol", "events", "errors", "commands", "paths", "mesh", "aggregate"]
    io_modules = {"asyncio", "socket", "os", "subprocess", "shutil", "aioquic", "zeroconf"}
    for name in [*pure, "transfer/plan"]:
        tree = ast.parse((PEER / f"{name}.py").read_text())
        used = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (
                node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
            )
        }
        assert used & io_modules == set(), (name, used & io_modules)
