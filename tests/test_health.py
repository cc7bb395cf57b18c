"""How a peer ends: the checker's rules, and a live peer ending cleanly every way it can.

The live tests run the real peer as a subprocess with its stdin still open, as in a container
or under a supervisor: that is where a reader thread blocked in a buffered read once made the
interpreter abort at exit (status 134, "Fatal Python error: _enter_buffered_busy").
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.backends.local import local_peer
from harness.health import KILLED, Ending, ending_problems, stderr_problems
from harness.peer import PeerHandle


def test_a_stop_must_exit_zero_and_only_a_kill_may_end_in_137() -> None:
    assert ending_problems(Ending(0, killed_by_lab=False)) == []
    assert ending_problems(Ending(KILLED, killed_by_lab=True)) == []
    assert ending_problems(Ending(134, killed_by_lab=False)) == [
        "exit status 134 after shutdown or SIGTERM (want 0)"
    ]
    assert ending_problems(Ending(KILLED, killed_by_lab=False)) != []  # killed, not by the lab
    assert ending_problems(Ending(1, killed_by_lab=True)) != []
    assert ending_problems(Ending(None, killed_by_lab=False)) != []  # hung after SIGTERM


def log(level: str, event: str) -> str:
    return json.dumps({"level": level, "event": event, "logger": "x"})


def test_stderr_may_hold_no_traceback_fatal_error_or_unexpected_error_log() -> None:
    clean = [log("info", "peer started"), log("warning", "send failed"), "plain text"]
    assert stderr_problems(clean) == []
    assert len(stderr_problems([*clean, "Traceback (most recent call last):"])) == 1
    fatal = "Fatal Python error: _enter_buffered_busy: could not acquire lock"
    assert stderr_problems([fatal]) == [f"stderr line 1: {fatal}"]
    assert stderr_problems([log("error", "task crashed")]) == [
        "stderr line 1: unexpected error log 'task crashed'"
    ]
    assert stderr_problems([log("error", "task crashed")], {"task crashed"}) == []
    assert len(stderr_problems([log("critical", "x"), log("ERROR", "y")])) == 2
    unawaited = "RuntimeWarning: coroutine 'Links._answers' was never awaited"
    assert stderr_problems([unawaited]) == [f"stderr line 1: {unawaited}"]


@pytest.fixture
def peer(worker_id: str) -> Iterator[PeerHandle]:
    with local_peer("health", worker_id) as handle:
        yield handle


def test_sigterm_with_stdin_open_exits_zero(peer: PeerHandle) -> None:
    peer.status()  # the stdin reader has read a line and is blocked reading the next
    assert peer.end() == []
    assert peer.endings == [Ending(0, killed_by_lab=False)]
    assert peer.events("cli-stopped")


def test_shutdown_with_stdin_open_exits_zero(peer: PeerHandle) -> None:
    peer.send("shutdown")
    peer.expect("cli-stopped")
    assert peer.end() == []
    assert peer.endings == [Ending(0, killed_by_lab=False)]


def test_a_lab_kill_then_restart_then_sigterm_is_two_clean_endings(peer: PeerHandle) -> None:
    peer.kill()
    peer.restart()
    assert peer.end() == []
    assert peer.endings == [Ending(KILLED, killed_by_lab=True), Ending(0, killed_by_lab=False)]


def test_a_paused_peer_is_thawed_and_stopped_cleanly(peer: PeerHandle) -> None:
    peer.pause()
    peer.resume()
    peer.status()
    peer.pause()  # still frozen at teardown: SIGTERM must reach it
    assert peer.end() == []
