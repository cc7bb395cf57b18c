"""`pytest tests` neither imports the Docker SDK nor talks to an engine.

A child pytest runs against a fake engine: `DOCKER_HOST` points at a socket this test listens
on and never answers, so any attempt to reach "Docker" shows up as a pending connection. A
probe plugin in the child records which Docker modules were imported by the end of its session.
The child runs one small test file (not this one: no recursion) and collects all of tests/.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("docker", "testcontainers")

PROBE = """\
import json
import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
    with open({out!r}, "w") as f:
        json.dump(loaded, f)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["tests/test_launch.py"],  # `--backend auto`, the default: must not even ask an engine
        # Every module's imports; `--backend` is accepted (and ignored: no scenarios). A module
        # that fails to import is its own tests' problem: this one asks only about Docker.
        ["tests", "--collect-only", "--continue-on-collection-errors", "--backend", "local"],
    ],
    ids=["run", "collect-all"],
)
def test_unit_tests_leave_docker_alone(
    args: list[str], tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    out = tmp_path / "heavy-modules.json"
    (tmp_path / "lanpeer_hygiene_probe.py").write_text(PROBE.format(heavy=HEAVY, out=str(out)))
    with socket.create_server(("127.0.0.1", 0)) as engine:
        port = engine.getsockname()[1]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "DOCKER_", "LANPEER_", "TESTCONTAINERS_"))
        }
        env["DOCKER_HOST"] = f"tcp://127.0.0.1:{port}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
        pytest_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        done = subprocess.run(
            [*pytest_argv, "-p", "lanpeer_hygiene_probe", *args],
            cwd=pytestconfig.rootpath,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        engine.setblocking(False)
        try:
            conn, _ = engine.accept()
        except BlockingIOError:
            contacted = False
        else:
            conn.close()
            contacted = True
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert out.exists(), f"the child pytest did not finish its session:\n{output}"
    if "--collect-only" not in args:
        assert done.returncode == 0, output
    assert not contacted, "the child pytest connected to DOCKER_HOST"
    imported = json.loads(out.read_text())
    assert imported == [], f"the child pytest imported the Docker SDK: {imported[:10]}"
