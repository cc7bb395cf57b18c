"""The lab's always-loaded pytest plugin (`-p harness.plugin` in pyproject.toml).

It declares the `lanpeer` option group and registers the run log and the HTML report. It
imports nothing heavy: the Docker SDK is imported only by
`scenarios/conftest.py`, and only when scenarios run on Docker, so `pytest tests` never touches
an engine. `--backend` is declared here rather than in that conftest because pytest reads
options only from plugins and initial conftests: `pytest tests --backend local` must not be an
error.
"""

from __future__ import annotations

import os

import pytest

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
        "xdist workers over several engines. Default: DOCKER_HOST, else the local socket",
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
    runlog = RunLog(config)
    config.pluginmanager.register(runlog, "lanpeer-runlog")
    config.pluginmanager.register(Reporter(config, runlog), "lanpeer-report")
