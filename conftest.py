"""The lab's pytest wiring: backend choice, the `lab` fixture, scenario IDs, cleanup.

Ryuk (testcontainers' reaper) is switched off before testcontainers is imported: its image
cannot be pulled here. Cleanup is ours instead: everything carries the run's labels and is
removed per test, per worker at exit, and by the controller at session start and finish.
"""

from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.backends.base import Backend
from harness.lab import Lab

ROOT = Path(__file__).parent
TIMELINES = ROOT / "artifacts" / "timelines"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=os.environ.get("LANPEER_BACKEND", "auto"),
        choices=["auto", "docker", "local"],
        help="where peers run: docker containers, local subprocesses, or auto (docker when "
        "an engine answers, else local)",
    )


def _choose_backend(config: pytest.Config) -> tuple[str, str]:
    wanted = config.getoption("backend")
    if wanted == "local":
        return "local", "--backend local"
    from harness.backends.docker import engine_problem

    problem = engine_problem()
    if wanted == "docker":
        if problem:
            raise pytest.UsageError(f"--backend docker, but the engine is unusable: {problem}")
        return "docker", "--backend docker"
    if problem:
        return "local", f"auto: no usable Docker engine ({problem})"
    return "docker", "auto: Docker engine answered"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        os.environ.setdefault("LANPEER_RUN_ID", uuid.uuid4().hex[:12])
        name, why = _choose_backend(config)
        os.environ["LANPEER_BACKEND_CHOSEN"] = name
        os.environ["LANPEER_BACKEND_WHY"] = why
        if name == "docker":
            from harness.backends.docker import sweep_stale

            sweep_stale(os.environ["LANPEER_RUN_ID"])


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"lanpeer backend: {os.environ.get('LANPEER_BACKEND_CHOSEN')} "
        f"({os.environ.get('LANPEER_BACKEND_WHY')}); run id {os.environ.get('LANPEER_RUN_ID')}"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`-k S04` selects a scenario by the ID in its marker, whatever the test is named."""
    for item in items:
        marker = item.get_closest_marker("scenario")
        if marker is not None:
            sid = str(marker.args[0])
            item.extra_keyword_matches.add(sid)
            item.user_properties.append(("scenario", sid))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    if os.environ.get("LANPEER_BACKEND_CHOSEN") == "docker":
        from harness.backends.docker import sweep_run

        sweep_run(os.environ["LANPEER_RUN_ID"])


def _make_backend() -> Backend:
    run_id = os.environ["LANPEER_RUN_ID"]
    if os.environ.get("LANPEER_BACKEND_CHOSEN") == "docker":
        from harness.backends.docker import DockerBackend

        return DockerBackend(run_id)
    from harness.backends.local import LocalBackend

    return LocalBackend(run_id)


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A fresh world per scenario; torn down (containers, network, temp dirs) even on failure."""
    the_lab = Lab(_make_backend())
    try:
        yield the_lab
    finally:
        marker = request.node.get_closest_marker("scenario")
        name = str(marker.args[0]) if marker else request.node.name
        try:
            the_lab.write_timeline(TIMELINES / os.environ["LANPEER_RUN_ID"] / f"{name}.json")
        finally:
            the_lab.close()
