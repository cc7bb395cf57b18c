"""The lab's options are known before pytest parses the command line.

`--backend docker` once left "docker" as a path to test: the plugin that declares the option was
loaded only by the root conftest, after parsing, so scenarios/conftest.py was never loaded on
the controller of `./lab test` (CI), and its runs logged no backend and no run id.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_spaced_backend_option_still_wires_the_scenarios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-p", "no:cacheprovider", "--backend", "local",
         "-k", "S1 and startup"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "lanpeer backend: local (--backend local)" in done.stdout, done.stdout[-2000:]
    assert done.returncode == 0, done.stdout[-2000:]
