"""How the CLI ends: once its stop is done, a late SIGTERM or SIGINT cannot kill it.

The lab (and any supervisor) may send SIGTERM the moment `cli-stopped` is out, while the
process is still ending: threads joined, the loop closed. The default action then would make
a clean stop exit 143 (the lab's health check saw it under load).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer import cli


@pytest.fixture
def shutdown_on_stdin() -> Iterator[None]:
    """fd 0 is a pipe holding `shutdown`, as a driver would send it; restored after."""
    saved = os.dup(0)
    read, write = os.pipe()
    os.write(write, b'{"cmd": "shutdown"}\n')
    os.dup2(read, 0)
    os.close(read)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(write)


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`main` sets signal dispositions for the process: undo them. Its logging setup is left
    out: it binds structlog, for good, to this test's captured stderr, which later tests in
    the process would then write to after it closed."""
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    dispositions = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, disposition in dispositions.items():
        signal.signal(sig, disposition)


def test_a_stopped_peer_ignores_a_late_sigterm_until_it_exits(
    shutdown_on_stdin: None, restored: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--no-mdns", "--listen", "127.0.0.1:0"]
    argv += ["--games-dir", str(tmp_path / "games"), "--state-dir", str(tmp_path / "state")]

    assert cli.main(argv) == 0

    out = capsys.readouterr().out.splitlines()  # records, and structlog's default output
    events = [json.loads(line).get("event") for line in out if line.startswith('{"type"')]
    assert events[-1] == "cli-stopped", events
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
