"""requirements.lock is what gets installed: in this venv, in the image, and nothing else.

The first test is the guard the README promises: a package installed or upgraded by hand (or by
a setup that went around the lock) fails it, naming the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import lockfile

ROOT = Path(__file__).resolve().parent.parent
ENTRY = "demo==1.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via lanpeer\n"


def test_this_venv_holds_exactly_the_lock() -> None:
    problems = lockfile.drift(lockfile.read(), lockfile.installed())
    assert not problems, (
        "the venv differs from requirements.lock; run scripts/setup.sh (never pip install by "
        "hand), or ./lab lock to change the lock:\n" + "\n".join(problems)
    )


def test_the_lock_satisfies_every_declared_requirement() -> None:
    problems = lockfile.unsatisfied(lockfile.read(), lockfile.project_requirements())
    assert not problems, "pyproject.toml asks for what the lock lacks; run ./lab lock:\n" + (
        "\n".join(problems)
    )


def test_every_entry_is_an_exact_pin_with_hashes() -> None:
    lock = lockfile.read()
    assert {"aioquic", "pytest", "uv", "pip", "setuptools"} <= lock.keys()
    for entry in lock.values():
        assert entry.hashes and all(h.startswith("sha256:") for h in entry.hashes), entry.name


def test_drift_names_missing_other_and_unlocked_packages() -> None:
    lock = lockfile.parse(ENTRY + "win==2 ; sys_platform == 'win32' \\\n    --hash=sha256:cc\n")
    assert lockfile.drift(lock, {"demo": "1.0"}) == []  # win32-only entries are not expected
    assert lockfile.drift(lock, {}) == ["demo: locked 1.0, not installed"]
    assert lockfile.drift(lock, {"demo": "1.1"}) == ["demo: locked 1.0, installed 1.1"]
    assert lockfile.drift(lock, {"demo": "1.0", "extra": "3"}) == [
        "extra 3: installed but not locked"
    ]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("demo>=1.0 \\\n    --hash=sha256:aa\n", id="range"),
        pytest.param("demo==1.0\n", id="no-hash"),
        pytest.param("demo==1.0 \\\n    --hash=md5:aa\n", id="weak-hash"),
        pytest.param("demo==1.0 \\\n    --index-url=x\n", id="option"),
        pytest.param(ENTRY + ENTRY, id="twice"),
        pytest.param("demo==1.0 \\\n", id="dangling"),
    ],
)
def test_a_lock_that_pins_loosely_is_refused(text: str) -> None:
    with pytest.raises(lockfile.LockError):
        lockfile.parse(text)


def test_unsatisfied_names_out_of_range_and_missing() -> None:
    lock = lockfile.parse(ENTRY)
    wanted = {"runtime": ["demo>=2"], "extra test": ["absent"]}
    assert lockfile.unsatisfied(lock, wanted) == [
        "runtime: demo>=2 but the lock pins 1.0",
        "extra test: absent is not in the lock",
    ]


def test_the_image_gets_the_runtime_closure_only() -> None:
    runtime = lockfile.parse(lockfile.runtime_lock(lockfile.read()))
    assert {"aioquic", "cryptography", "zeroconf", "msgspec", "structlog", "rarfile"} <= (
        runtime.keys()
    )
    assert "cffi" in runtime  # transitive, through cryptography
    assert not {"pytest", "mypy", "ruff", "docker", "uv", "pip"} & runtime.keys()
    for name, entry in runtime.items():
        assert entry == lockfile.read()[name]  # the same pins and hashes, not a re-resolve


TAGS = """
import json, sys
from pathlib import Path
from harness.image import _peer_tag_for
print(json.dumps([_peer_tag_for(Path(p), "base:x") for p in sys.argv[1:]]))
"""


def _tree(tmp: Path, name: str) -> Path:
    dest = tmp / name
    dest.mkdir()
    for file in ("Dockerfile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(ROOT / file, dest / file)
    shutil.copytree(ROOT / "peer", dest / "peer", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_the_image_tag_covers_the_lock_and_not_tool_settings(tmp_path: Path) -> None:
    """A lock change is a new image; a lint setting is not. (A child process: harness.image
    imports the Docker SDK, which `pytest tests` never does; see test_hygiene.)"""
    same = _tree(tmp_path, "same")
    lock = _tree(tmp_path, "lock")
    with (lock / "requirements.lock").open("a") as f:
        f.write("demo==1.0 \\\n    --hash=sha256:aa\n")
    lint = _tree(tmp_path, "lint")
    pyproject = (lint / "pyproject.toml").read_text()
    (lint / "pyproject.toml").write_text(pyproject.replace("line-length = 100", "line-length = 99"))
    assert pyproject != (lint / "pyproject.toml").read_text()
    out = subprocess.run(
        [sys.executable, "-c", TAGS, str(ROOT), str(same), str(lock), str(lint)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    here, copy, relocked, relinted = json.loads(out.stdout)
    assert here == copy == relinted
    assert relocked != here
