"""The lab's scenario wiring: backend choice, the `lab` fixture, scenario IDs, cleanup sweeps.

Only runs that include scenarios load this file, so only they may import the Docker SDK or ask
an engine anything; `pytest tests` never does. (`--backend` and `--runlog` are declared in
`harness.plugin`, which every run loads.)

Identity comes from pytest-xdist: the controller (or an undistributed pytest) chooses the
backend and makes the run id once and hands both, with the run's Docker engines, to its workers
in `workerinput`; the worker id is xdist's `worker_id`. Each worker's engine is the one its xdist
spec named (`env:LANPEER_ENGINE`), which harness/plugin.py put in the spec and, in the worker,
in `DOCKER_HOST` before any client existed: testcontainers and the SDK use it from then on.
Cleanup: everything carries the run's labels and is removed per test, per worker at exit, and
by the controller, on every engine, at session start (stale runs) and finish.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.backends.base import Backend
from harness.backends.engines import EngineError, run_engines, worker_engine
from harness.lab import Lab
from harness.labrun import LAB_RUN, WORKERINPUT_KEY, LabRun
from harness.nemesis import MECHANISM

ENGINES = pytest.StashKey[tuple[str, ...]]()
ENGINES_KEY = "lanpeer_engines"


def _engines(config: pytest.Config) -> tuple[str, ...]:
    try:
        return run_engines(config.getoption("docker_host"), os.environ)
    except EngineError as exc:
        raise pytest.UsageError(str(exc)) from exc


def _choose_backend(config: pytest.Config, engines: tuple[str, ...]) -> tuple[str, str]:
    wanted = config.getoption("backend")
    if wanted == "local":
        return "local", "--backend local"
    from harness.backends.docker import engine_problem

    problems = [p for p in map(engine_problem, engines) if p]
    if wanted == "docker" or config.getoption("docker_host"):
        if problems:
            raise pytest.UsageError(f"an engine of this run is unusable: {'; '.join(problems)}")
        return "docker", f"--backend {wanted}"
    if problems:
        return "local", f"auto: no usable Docker engine ({problems[0]})"
    return "docker", "auto: Docker engine answered"


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and WORKERINPUT_KEY in workerinput:
        config.stash[LAB_RUN] = LabRun.from_workerinput(workerinput[WORKERINPUT_KEY])
        config.stash[ENGINES] = tuple(workerinput[ENGINES_KEY])
        return
    engines = config.stash[ENGINES] = _engines(config)
    # The controller or an undistributed run; or, rarely, a worker whose controller never
    # loaded this file (`pytest -n 2 .`: scenarios/ is then no initial conftest directory):
    # such a worker chooses alone, under xdist's run id, which all its siblings share.
    run_id = str(workerinput["testrunuid"])[:12] if workerinput else uuid.uuid4().hex[:12]
    name, why = _choose_backend(config, engines)
    config.stash[LAB_RUN] = LabRun(run_id=run_id, backend=name, why=why)
    if workerinput is None and name == "docker":
        from harness.backends.docker import sweep_stale

        _say_left(sweep_stale(run_id, engines), "earlier runs")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, on the controller: every worker gets the run the controller made."""
    node.workerinput[WORKERINPUT_KEY] = node.config.stash[LAB_RUN].to_workerinput()
    node.workerinput[ENGINES_KEY] = list(node.config.stash[ENGINES])


def pytest_report_header(config: pytest.Config) -> str:
    run = config.stash[LAB_RUN]
    engines = config.stash[ENGINES]
    where = f"; engines {', '.join(engines)}" if run.backend == "docker" else ""
    faults = MECHANISM if run.backend == "docker" else "pause only (no network namespaces)"
    return (
        f"lanpeer backend: {run.backend} ({run.why}); run id {run.run_id}{where}\n"
        f"lanpeer nemesis: {faults}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`-k S04` selects a scenario by the ID in its marker, whatever the test is named;
    `requires_docker` skips a scenario, with its reason, when the run is not on Docker."""
    backend = config.stash[LAB_RUN].backend
    for item in items:
        marker = item.get_closest_marker("scenario")
        if marker is not None:
            sid = str(marker.args[0])
            item.extra_keyword_matches.add(sid)
            item.user_properties.append(("scenario", sid))
        needs = item.get_closest_marker("requires_docker")
        if needs is not None and backend != "docker":
            reason = needs.kwargs.get("reason") or (needs.args[0] if needs.args else "")
            item.add_marker(pytest.mark.skip(reason=str(reason) or "needs the Docker backend"))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    run = session.config.stash[LAB_RUN]
    if run.backend == "docker":
        from harness.backends.docker import sweep_run

        engines: tuple[str, ...] = session.config.stash[ENGINES]
        _say_left(sweep_run(run.run_id, engines), f"run {run.run_id}")


def _say_left(refused: list[str], whose: str) -> None:
    """The sweeps never fail a run, but what an engine refused to remove is said, not hidden:
    a person may have to remove it by hand (a daemon that keeps a stale endpoint, say)."""
    for left in refused:
        print(f"lanpeer: left on the engine from {whose}, refused: {left}", file=sys.stderr)


def _make_backend(run: LabRun, worker: str, engines: tuple[str, ...]) -> Backend:
    if run.backend == "docker":
        from harness.backends.docker import DockerBackend

        return DockerBackend(run.run_id, worker, worker_engine(os.environ, engines), engines)
    from harness.backends.local import LocalBackend

    return LocalBackend(run.run_id, worker)


@pytest.fixture
def lab(request: pytest.FixtureRequest, worker_id: str) -> Iterator[Lab]:
    """A fresh world per scenario; torn down (containers, network, temp dirs) even on failure."""
    run = request.config.stash[LAB_RUN]
    engines = request.config.stash[ENGINES]
    the_lab = Lab(_make_backend(run, worker_id, engines))
    if run.backend == "docker":  # which engine ran it: in the JUnit XML and the run report
        request.node.user_properties.append(("engine", worker_engine(os.environ, engines)))
    problems: list[str] = []
    try:
        yield the_lab
    finally:
        marker = request.node.get_closest_marker("scenario")
        name = str(marker.args[0]) if marker else request.node.name
        timelines = request.config.rootpath / "artifacts" / "timelines" / run.run_id
        try:
            problems = the_lab.end_peers()
            the_lab.write_timeline(timelines / f"{name}.json", name)
        finally:
            the_lab.close()
    if problems:  # how every peer ended is part of every scenario's expected column
        tails = "\n".join(p.context() for p in the_lab.peers)
        pytest.fail("peers did not end cleanly:\n" + "\n".join(problems) + "\n" + tails)
