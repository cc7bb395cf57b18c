"""Peers as local subprocesses on distinct 127.0.0.x addresses, for machines without Docker.

Same API as the Docker backend, minus what only containers can do (tmpfs size limits).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness import powerfs
from harness.backends.base import LineSink, PeerSpec
from harness.fixtures_builder import fixture_path
from harness.peer import PeerHandle

_addresses = itertools.count()


def _next_loopback(worker: str) -> str:
    """A fresh 127.x address; x comes from xdist's worker id, so workers never collide."""
    number = worker.removeprefix("gw")  # "master" (no xdist) shares gw0's block
    block = 10 + (int(number) if number.isdigit() else 0) % 200
    n = next(_addresses)
    return f"127.{block}.{(n // 250) % 250}.{n % 250 + 2}"


def _pump(stream: IO[bytes], name: str, sink: LineSink) -> None:
    for raw in iter(stream.readline, b""):
        sink(name, raw.decode("utf-8", errors="replace").rstrip("\n"))


class LocalPeer:
    def __init__(self, spec: PeerSpec, workdir: Path, worker: str) -> None:
        if spec.games_tmpfs or spec.mdns:
            # tmpfs needs a container; mDNS on the host would reach the machine's real network.
            raise RuntimeError("the local backend has no tmpfs /games or mDNS; use docker")
        self.name = spec.name
        self.spec = spec
        self.games = workdir / "games"
        self.state = workdir / "state"
        self.host = _next_loopback(worker)
        self.proc: subprocess.Popen[bytes] | None = None
        self.games.mkdir(parents=True)
        if spec.fixture:
            shutil.copytree(fixture_path(spec.fixture), self.games, dirs_exist_ok=True)
        self.mount: Path | None = None
        if spec.power:  # the seeds above stay as they are; the peer runs on the mount
            self.mount, self.disk = workdir / "power", workdir / "disk"
            self.seeds = {
                powerfs.MOUNT_GAMES: str(self.games),
                powerfs.MOUNT_STATE: str(self.state),
            }
            self.games = self.mount / powerfs.MOUNT_GAMES
            self.state = self.mount / powerfs.MOUNT_STATE

    def start(self, sink: LineSink) -> None:
        argv = [
            sys.executable,
            "-m",
            "peer",
            "--games-dir",
            str(self.games),
            "--state-dir",
            str(self.state),
            "--listen",
            f"{self.host}:0",
            *self.spec.peer_args(),
        ]
        if self.mount is not None:
            self._unmount()  # what a power cut left of the last mount
            argv = powerfs.run_argv(
                sys.executable, "harness.powerfs", str(self.disk), str(self.mount), self.seeds, argv
            )
        # A session of its own: a kill takes the whole group (a power peer's mount daemon, an
        # unrar child) as a container's does.
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **self.spec.env},
            start_new_session=True,
        )
        assert self.proc.stdout and self.proc.stderr
        for stream, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            threading.Thread(target=_pump, args=(stream, name, sink), daemon=True).start()

    def write(self, data: bytes) -> None:
        assert self.proc and self.proc.stdin
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # also ends stopped (paused) ones
            self.proc.wait(timeout=30)

    def _unmount(self) -> None:
        """Detach a mount whose daemon died (a power cut); nothing when none is there. (A dead
        FUSE mount fails every stat, so os.path.ismount cannot tell.)"""
        if self.mount is not None:
            subprocess.run(
                ["fusermount3", "-u", "-z", str(self.mount)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def terminate(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # a paused peer cannot act on SIGTERM
                os.killpg(self.proc.pid, signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.exit_status()

    def exit_status(self) -> int | None:
        code = None if self.proc is None else self.proc.poll()
        return None if code is None else (128 - code if code < 0 else code)

    def arm_power_cut(self, syncs: int) -> None:
        assert self.mount is not None, f"{self.name} is not a power peer"
        self.disk.mkdir(parents=True, exist_ok=True)
        (self.disk / powerfs.ARM).write_text(str(syncs))

    def pause(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
        self._unmount()

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        if argv and argv[0] == "python3":
            argv = [sys.executable, *argv[1:]]
        done = subprocess.run(argv, capture_output=True, check=False, timeout=600)
        return done.returncode, done.stdout if done.returncode == 0 else done.stdout + done.stderr

    def path(self, rel: str) -> str:
        return str(self.games / rel)

    def state_path(self, rel: str) -> str:
        return str(self.state / rel)


class LocalBackend:
    name = "local"
    unrar = shutil.which("unrar") or "unrar"  # scripts/setup.sh installs it

    def __init__(self, run_id: str, worker: str) -> None:
        """`worker` is xdist's worker id ("gw0", ...), or "master" in an undistributed run."""
        self.worker = worker
        self.root = Path(tempfile.mkdtemp(prefix=f"lanpeer-{run_id}-"))
        self.peers: list[LocalPeer] = []

    def scratch(self, name: str) -> str:
        return str(self.root / name)  # removed with the root at close

    def create(self, spec: PeerSpec) -> LocalPeer:
        peer = LocalPeer(spec, self.root / f"{len(self.peers):02d}-{spec.name}", self.worker)
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def local_peer(name: str, worker: str, args: tuple[str, ...] = ()) -> Iterator[PeerHandle]:
    """One started peer as a subprocess, outside any scenario (the fast tests' live peer),
    removed with its directories afterwards."""
    backend = LocalBackend(f"{name}-{uuid.uuid4().hex[:6]}", worker)
    spec = PeerSpec(name=name, args=args)
    handle = PeerHandle(backend.create(spec), spec)
    try:
        handle.start()
        yield handle
    finally:
        backend.close()
