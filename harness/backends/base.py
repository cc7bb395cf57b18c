"""What a backend must provide for one peer, whatever runs it.

A backend turns a `PeerSpec` into a running peer and gives the handle a byte pipe (stdin), a
line feed (stdout/stderr), process control and file access inside the peer's world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

LineSink = Callable[[str, str], None]  # (stream name "stdout"|"stderr", line)

GAMES = "/games"
STATE = "/state"


@dataclass(frozen=True)
class PeerSpec:
    """How to start one peer: its name, the fixture that seeds its games root, extra flags."""

    name: str
    fixture: str | None = None
    args: tuple[str, ...] = ()
    games_tmpfs: str | None = None  # e.g. "32m": /games is a tmpfs of that size (Docker only)
    mdns: bool = False  # off unless a scenario is about discovery: connects stay explicit
    env: dict[str, str] = field(default_factory=dict)
    # /games and /state on powerfs (harness/powerfs): a kill is then a power cut, losing every
    # byte and directory change the peer never fsynced. Docker gives only these peers /dev/fuse
    # and SYS_ADMIN (the peer itself runs with no capabilities); local mounts on the host.
    power: bool = False

    def peer_args(self) -> list[str]:
        """Flags every backend passes after --games-dir/--state-dir/--listen."""
        return [*([] if self.mdns else ["--no-mdns"]), *self.args]


class PeerProcess(Protocol):
    """One running peer as the handle sees it."""

    name: str

    def start(self, sink: LineSink) -> None:
        """Start the peer, feeding every stdout/stderr line to `sink`."""

    def write(self, data: bytes) -> None:
        """Write raw bytes to the peer's stdin."""

    def kill(self) -> None:
        """SIGKILL the peer: no goodbye, sockets die with it."""

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM the peer if it runs and wait up to `timeout` s for it to exit. Its exit
        status as a shell shows it (128+N after signal N), or None if it was still running
        (it is then SIGKILLed)."""

    def exit_status(self) -> int | None:
        """How the peer's last run ended (as `terminate` says it), or None while it runs."""

    def arm_power_cut(self, syncs: int) -> None:
        """Tell a power peer's powerfs to cut the power at its `syncs`-th sync from the next
        one (PeerSpec.power); works whether the peer runs or not."""

    def pause(self) -> None:
        """Freeze the whole peer (the cgroup freezer; SIGSTOP on the local backend)."""

    def resume(self) -> None:
        """Thaw a paused peer."""

    def stop(self) -> None:
        """Remove everything this peer owns (idempotent)."""

    def exited(self) -> bool: ...

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        """Run a command in the peer's world (container or host) and return (rc, stdout)."""

    def path(self, rel: str) -> str:
        """The absolute path of `rel` (relative to the games root) as `run` sees it."""

    def state_path(self, rel: str) -> str:
        """The absolute path of `rel` (relative to the state dir) as `run` sees it."""


class Backend(Protocol):
    name: str
    unrar: str  # the unrar a peer in this backend passes as --unrar

    def create(self, spec: PeerSpec) -> PeerProcess: ...

    def scratch(self, name: str) -> str:
        """A path for a helper file (e.g. an unrar wrapper) in the world of every peer, known
        before any peer starts, so it can be named in a peer's arguments."""

    def close(self) -> None:
        """Remove every peer, network and temporary directory this backend made."""
