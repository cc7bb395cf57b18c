"""Start-up misuse ends in one JSON error record with a stable code and a non-zero exit.

No traceback, no half-started peer: a user (or a script) reads why from stdout.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from peer.cli import main
from peer.dirlock import DirLock


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`main` configures logging for the process, to pytest's captured stderr: undo that."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str
) -> tuple[int, list[dict[str, Any]]]:
    argv = ["--no-mdns", "--listen", "127.0.0.1:0", *extra]
    if "--games-dir" not in extra:
        argv += ["--games-dir", str(tmp_path / "games")]
    if "--state-dir" not in extra:
        argv += ["--state-dir", str(tmp_path / "state")]
    code = main(argv)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, [r for r in records if r["type"] == "error"]


def test_a_games_dir_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    code, errors = run(capsys, tmp_path, "--games-dir", str(tmp_path / "file"))
    assert (code, [e["code"] for e in errors]) == (2, ["bad-path"]), errors


@pytest.mark.parametrize("which", ["games", "state"])
def test_a_directory_another_peer_holds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, which: str
) -> None:
    (tmp_path / which).mkdir()
    held = DirLock(tmp_path / which)  # as a running peer holds it
    try:
        code, errors = run(capsys, tmp_path)
    finally:
        held.release()
    assert (code, [e["code"] for e in errors]) == (2, ["dir-in-use"]), errors
    assert str(tmp_path / which) in errors[0]["message"]


def test_a_listen_port_in_use(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        code, errors = run(capsys, tmp_path, "--listen", f"127.0.0.1:{port}")
    assert (code, [e["code"] for e in errors]) == (2, ["bad-address"]), errors


def test_a_listen_host_that_does_not_resolve(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, errors = run(capsys, tmp_path, "--listen", "no-such-host.invalid:0")
    assert (code, [e["code"] for e in errors]) == (2, ["bad-address"]), errors


@pytest.mark.parametrize(
    "content", ['{"peer_id": 5}', '{"peer_id": "short"}', "not json", "[]", '{"x": 1}']
)
def test_a_corrupt_identity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "identity.json").write_text(content)
    code, errors = run(capsys, tmp_path)
    assert (code, [e["code"] for e in errors]) == (2, ["bad-state-dir"]), errors


@pytest.mark.parametrize(
    ("games", "state"),
    [("games", "games/bfbc2/state"), ("state/games", "state"), ("same", "same")],
    ids=["state-in-a-game-root", "games-in-state", "one-dir"],
)
def test_a_state_dir_and_games_dir_that_overlap(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, games: str, state: str
) -> None:
    """The state dir holds our private key: inside a game root it would be served."""
    dirs = ("--games-dir", str(tmp_path / games), "--state-dir", str(tmp_path / state))
    code, errors = run(capsys, tmp_path, *dirs)
    assert (code, [e["code"] for e in errors]) == (2, ["bad-path"]), errors
    assert not (tmp_path / state / "tls-key.pem").exists(), "refused before any key is made"


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--chunk-size", "-1"],
        ["--chunk-size", "many"],
        ["--ping-interval", "inf"],
        ["--stale-timeout", "nan"],
        ["--log-level", "loud"],
    ],
)
def test_argument_misuse_is_a_json_refusal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    code, errors = run(capsys, tmp_path, *argv)
    assert (code, [e["code"] for e in errors]) == (2, ["bad-argument"]), errors


def test_a_missing_required_argument_is_a_json_refusal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--games-dir", "g"]) == 2
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (record["type"], record["code"]) == ("error", "bad-argument")
    assert "--state-dir" in record["message"]


def _start_with_catalog(tmp_path: Path, catalog: str) -> tuple[int, list[dict[str, Any]]]:
    """A real process, bounded in time and memory: the defects are a hang and unbounded RSS."""
    argv = [sys.executable, "-m", "peer", "--no-mdns", "--listen", "127.0.0.1:0"]
    argv += ["--games-dir", str(tmp_path / "games"), "--state-dir", str(tmp_path / "state")]

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run(
        [*argv, "--catalog", catalog],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        preexec_fn=limit_memory,
        check=False,
    )
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, [r for r in records if r["type"] == "error"]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_catalog_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    """A FIFO would block start-up forever and `/dev/zero` would be read without end."""
    catalog = "/dev/zero"
    if kind == "fifo":
        catalog = str(tmp_path / "catalog.json")
        os.mkfifo(catalog)
    code, errors = _start_with_catalog(tmp_path, catalog)
    assert (code, [e["code"] for e in errors]) == (2, ["bad-catalog"]), errors


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe{}",
        b"[" * 100_000,
        b'{"../x": "1"}',
        b'{"bfbc2": "' + b"9" * 65 + b'"}',
        b'{"bfbc2": 1}',
        b"[]",
        b" " * (4 * 1024 * 1024 + 1),
    ],
    ids=["not-utf8", "deep", "bad-id", "long-version", "number", "list", "too-large"],
)
def test_a_malformed_catalog(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "catalog.json"
    path.write_bytes(content)
    code, errors = run(capsys, tmp_path, "--catalog", str(path))
    assert (code, [e["code"] for e in errors]) == (2, ["bad-catalog"]), errors


def test_a_line_of_invalid_utf8_on_stdin_is_refused_and_the_peer_goes_on(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "peer", "--no-mdns", "--listen", "127.0.0.1:0"]
    argv += ["--games-dir", str(tmp_path / "games"), "--state-dir", str(tmp_path / "state")]
    lines = b'\xff\xfe{"cmd": "status"}\n{"cmd": "status", "id": "after"}\n'
    done = subprocess.run(argv, input=lines, capture_output=True, timeout=30, check=False)
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    answered = [r for r in records if r["type"] in ("result", "error") and r.get("cmd") != "x"]
    assert [r["type"] for r in answered] == ["error", "result"], records
    assert answered[1].get("id") == "after", answered
