"""The shape of peer/: small modules, no import cycles, and no part that imports the node."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PEER = Path(__file__).parents[1] / "peer"
MAX_LINES = 350
# The wire vocabulary is declared in one file on purpose (as aioquic's quic/events.py is): one
# place to read every message. It may grow a little past the rest, not without bound.
# links.py owns every rule about a link (meeting, the choice between two crossed links, redial,
# liveness, requests on a replaced link, a library resync); it is next to be split (the
# introduction rules).
LIMITS = {"peer.protocol": 400, "peer.links": 400}


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


def reached(name: str, edges: dict[str, set[str]]) -> set[str]:
    """Every peer module `name` imports, directly or through others."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in edges[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_a_streamed_install_borrows_nothing_from_the_download() -> None:
    """The two transfers share `transfer/sources.py` (and the pure planner's vote), not each
    other's modules: a third kind of transfer starts from the same place."""
    download_only = {f"peer.transfer.{m}" for m in ("fetch", "copies", "disk", "resume")}
    assert reached("peer.transfer.stream", graph()) & download_only == set()


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


# The modules docs/ARCHITECTURE.md calls pure: plain functions and values, no files, sockets,
# processes or event loop.
PURE = [
    "protocol", "events", "errors", "commands", "paths", "strangers", "mesh", "aggregate",
    "budgets", "transfer/plan", "transfer/resume",
]  # fmt: skip
IO_MODULES = {
    "asyncio", "socket", "os", "io", "subprocess", "shutil", "tempfile", "signal", "selectors",
    "threading", "aioquic", "zeroconf", "structlog",
}  # fmt: skip
IO_BUILTINS = {"open", "print", "input"}


def io_reached(source: str) -> set[str]:
    """What of the I/O a module's source names: modules imported, concrete `pathlib` classes
    (the pure ones are plain values) and I/O builtins called."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names} & IO_MODULES
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module.split(".")[0]} & IO_MODULES
            if node.module == "pathlib":
                found |= {f"pathlib.{a.name}" for a in node.names if not a.name.startswith("Pure")}
        elif isinstance(node, ast.Call) and isinstance(name := node.func, ast.Name):
            found |= {f"{name.id}()"} if name.id in IO_BUILTINS else set()
    return found


def test_the_pure_core_imports_no_io_and_calls_no_io_builtin() -> None:
    reached = {name: io_reached((PEER / f"{name}.py").read_text()) for name in PURE}
    assert {name: found for name, found in reached.items() if found} == {}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import os.path", {"os"}),
        ("from asyncio import sleep", {"asyncio"}),
        ("from pathlib import Path, PurePosixPath", {"pathlib.Path"}),
        ("def f(p):\n    return open(p).read()", {"open()"}),
        ("print('x')", {"print()"}),
        ("import re\nfrom pathlib import PurePosixPath\nx = re.compile('a')", set()),
    ],
)
def test_the_io_check_sees_each_kind_of_io(source: str, found: set[str]) -> None:
    assert io_reached(source) == found
