"""The lab's always-loaded pytest plugin (the root `conftest.py` loads it).

It declares the `lanpeer` option group, binds xdist's workers to the run's Docker engines (see
harness/backends/engines.py), and registers the run log and the HTML report. It
imports nothing heavy: the Docker SDK is imported only by
`scenarios/conftest.py`, and only when scenarios run on Docker, so `pytest tests` never touches
an engine. `--backend` is declared here rather than in that conftest because pytest reads
options only from plugins and initial conftests: `pytest tests --backend local` must not be an
error.
"""

from __future__ import annotations

import os

import pytest

from harness.backends.engines import EngineError, bind_workers, run_engines, worker_engine
from harness.reporter import Reporter
from harness.runlog import RunLog


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lanpeer", "lanpeer lab")
    group.addoption(
        "--backend",
        default=os.environ.get("LANPEER_BACKEND", "auto"),
        choices=["auto", "docker", "local"],
        help="where scenario peers run: docker containers, local subprocesses, or auto (docker "
        "when an engine answers, else local); runs without scenarios ignore it",
    )
    group.addoption(
        "--docker-host",
        action="append",
        default=[],
        metavar="URL",
        help="a Docker engine for scenario peers (unix://, tcp:// or ssh://); repeat it to spread "
        "xdist workers over several engines (each worker's --tx spec gets env:LANPEER_ENGINE=i, "
        "the index of its engine here). Default: DOCKER_HOST, else the local socket",
    )
    group.addoption(
        "--nemesis-seed",
        type=int,
        default=1,
        help="the seed of N01's fault schedule and workload (the same seed replays them)",
    )
    group.addoption(
        "--nemesis-minutes",
        type=float,
        default=0.75,
        help="how long N01 applies faults (CI runs the default; ./lab nemesis runs longer)",
    )
    group.addoption(
        "--runlog",
        default="RUNLOG.md",
        help="file to append the run entry to, relative to the rootdir ('' = off)",
    )


def pytest_configure(config: pytest.Config) -> None:
    _bind_to_engines(config)
    runlog = RunLog(config)
    config.pluginmanager.register(runlog, "lanpeer-runlog")
    config.pluginmanager.register(Reporter(config, runlog), "lanpeer-report")


def _bind_to_engines(config: pytest.Config) -> None:
    """Each process that runs tests keeps to one Docker engine, named in its `DOCKER_HOST`,
    which testcontainers' clients and the SDK read (harness/backends/engines.py).

    xdist's controller, before it starts any worker, writes the engine into each worker's
    `--tx` spec (`env:LANPEER_ENGINE=i`), so xdist sets it in that worker's environment; a
    worker, or an undistributed run, sets `DOCKER_HOST` to that engine before any client
    exists. A bad engine address is left for the scenario wiring to refuse: runs without
    scenarios never ask an engine anything."""
    try:
        engines = run_engines(config.getoption("docker_host"), os.environ)
    except EngineError:
        return
    try:
        if not hasattr(config, "workerinput") and _distributes(config):
            config.option.tx = bind_workers(config.option.tx, engines)
        else:
            os.environ["DOCKER_HOST"] = worker_engine(os.environ, engines)
    except EngineError as exc:  # a --tx spec naming an engine the run lacks
        raise pytest.UsageError(str(exc)) from exc


def _distributes(config: pytest.Config) -> bool:
    """Whether this process is an xdist controller that starts workers (xdist's own test:
    `--tx` alone, without `--dist` or `-n`, runs the tests here)."""
    option = config.option
    return getattr(option, "dist", "no") != "no" and bool(getattr(option, "tx", None))
