"""A lanpeer peer as a testcontainers module: `LanpeerContainer`, with testcontainers' `Network`.

    with Network() as net, LanpeerContainer(fixture="alpha").with_network(net) as peer:
        ready = peer.expect("local-peer-ready")
        peer.request("status")

The container *is* the peer: its entrypoint is `lanpeer`, driven by JSON lines on stdin, and
its records come back on stdout. `start()` creates the container (seeding `/games` with a
fixture's tar through `put_archive`), then attaches to stdin/stdout/stderr, and only then starts
it, as `docker run` does, so no line is missed. A second `start()` (`restart()`) after `kill()`
attaches again and starts the same container: its `/games` and `/state` are kept. Every line
goes to the container's sink: by default its own record list (`records()`, `expect()`,
`request()`), or a sink the caller gives (`with_sink`: the lab's `PeerHandle`).

The engine is testcontainers' choice, which is `DOCKER_HOST` (else the docker context, else the
local socket), as for any testcontainers module; the lab binds each pytest-xdist worker to one
engine by setting `DOCKER_HOST` in that worker before its first client (README "Several
engines"). An `ssh://` engine is reached through paramiko (testcontainers would shell out to
`ssh`, whose sockets break `exec_run`: docker/docker-py#3218).

Ryuk needs its image from a registry, which the lab's engines do not have: importing this
module turns it off unless `TESTCONTAINERS_RYUK_DISABLED` says otherwise. The lab cleans up
with its own labels and sweeps instead (harness/backends/docker.py).

The image defaults to the peer image of this tree (`harness.image.ensure_peer_image`: built
locally on first use, never pulled); a tag given instead must exist on the engine, or
testcontainers tries to pull it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import docker.errors
from docker import version as docker_version
from docker.types import EndpointConfig
from docker.utils.socket import frames_iter
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer, Reaper
from testcontainers.core.network import Network

from harness.backends.base import GAMES, STATE, LineSink
from harness.fixtures_builder import fixture_tar
from harness.image import ensure_peer_image

__all__ = ["LanpeerContainer", "Network"]

if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
    testcontainers_config.ryuk_disabled = True

Record = dict[str, Any]


class LanpeerContainer(DockerContainer):
    """One lanpeer peer in a container.

    `fixture` seeds `/games` with a fixture games root (fixtures/*.toml); `games_tmpfs` ("32m")
    makes `/games` a tmpfs of that size instead (it cannot be seeded: `docker cp` does not reach
    a tmpfs); `args` are extra `lanpeer` flags (`--no-mdns` is added unless `mdns`). Any other
    keyword argument is a Docker create option (`hostname`, `labels`, `cap_add`, `devices`,
    `entrypoint`, ...), as for `DockerContainer`.
    """

    def __init__(
        self,
        image: str | None = None,
        *,
        fixture: str | None = None,
        games_tmpfs: str | None = None,
        args: Sequence[str] = (),
        mdns: bool = False,
        docker_client_kw: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if games_tmpfs and fixture:
            raise ValueError("a tmpfs /games cannot be seeded (docker cp cannot reach tmpfs)")
        client_kw = {"use_ssh_client": False, **(docker_client_kw or {})}
        super().__init__(image or "", docker_client_kw=client_kw, **kwargs)
        self._image_given = image is not None
        self.fixture = fixture
        if games_tmpfs:
            self.with_tmpfs_mount(GAMES, f"size={games_tmpfs}")
        flags = [*([] if mdns else ["--no-mdns"]), *args]
        self._command = ["--games-dir", GAMES, "--state-dir", STATE, *flags]
        self._sink: LineSink = self._collect
        self._sock: Any = None
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self._stderr: list[str] = []
        self._ids = iter(range(1, 1 << 62))

    # -- life cycle ---------------------------------------------------------------------------

    def with_sink(self, sink: LineSink) -> Self:
        """Send every stdout/stderr line to `sink(stream, line)` instead of this container's
        own record list."""
        self._sink = sink
        return self

    def create(self) -> Self:
        """Create the container (seeded, not running); a no-op once it exists."""
        if self._container is not None:
            return self
        tc = testcontainers_config
        if not tc.ryuk_disabled and self.image != tc.ryuk_image:
            Reaper.get_instance()
        client = self.get_docker_client()
        if not self._image_given:
            self.image = ensure_peer_image(client.client)
        self._configure()
        options: dict[str, Any] = {"detach": True, "stdin_open": True, "tty": False}
        if self._network is not None:
            options["network"] = self._network.name
            options["networking_config"] = {
                self._network.name: EndpointConfig(
                    docker_version.__version__, aliases=self._network_aliases
                )
            }
        self._container = client.create(
            self.image,
            command=self._command,
            environment=self.env,
            ports=self.ports,
            name=self._name,
            tmpfs=self.tmpfs,
            **{**options, **self._kwargs},
        )
        if self.fixture:
            with open(fixture_tar(self.fixture), "rb") as tar:
                self._container.put_archive(GAMES, tar)
        return self

    def start(self) -> Self:
        """Create the container if needed, attach to its stdin/stdout/stderr, then start it:
        the first line it prints is already being read. Starting it again after `kill()`
        (`restart()`) keeps its /games and /state."""
        self.create()
        container = self.get_wrapped_container()
        # A former run's socket is left to end with that run, so its pump delivers every line.
        sock = self.get_docker_client().client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        self._sock = sock
        threading.Thread(target=_pump, args=(sock, self._sink), daemon=True).start()
        container.start()
        return self

    def restart(self) -> Self:
        """Kill the peer if it runs, then start the same container again."""
        if not self.exited():
            self.kill()
        return self.start()

    def kill(self) -> None:
        """SIGKILL the peer (thawing it first if paused) and wait until it is gone."""
        container = self.get_wrapped_container()
        try:
            container.reload()
            if container.status == "paused":
                container.unpause()
            container.kill()
            container.wait(timeout=60)
        except docker.errors.APIError:
            pass

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM the peer and wait up to `timeout` s: its exit status, or None if it was
        still running (it is then killed)."""
        container = self.get_wrapped_container()
        if not self.exited():
            if container.status == "paused":
                container.unpause()  # a frozen peer cannot act on SIGTERM
            with contextlib.suppress(docker.errors.APIError):
                container.kill(signal="SIGTERM")
            try:
                container.wait(timeout=timeout)
            except Exception:  # requests' ReadTimeout: still running
                self.kill()
                return None
        return self.exit_status()

    def exited(self) -> bool:
        """True once the peer's process has ended (or the container is gone)."""
        if self._container is None:
            return True
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return True
        return self._container.status not in ("running", "paused")

    def exit_status(self) -> int | None:
        """How the last run ended, as a shell shows it (137 after SIGKILL), or None while it
        runs."""
        if not self.exited():
            return None
        return int(self.get_wrapped_container().attrs["State"]["ExitCode"])

    def pause(self) -> None:
        """Freeze the whole peer (the cgroup freezer: a closed lid)."""
        self.get_wrapped_container().pause()

    def resume(self) -> None:
        self.get_wrapped_container().unpause()

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Remove the container (a force-remove, as testcontainers' `stop` is) and close the
        client; idempotent."""
        self._close_socket()
        if self._container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                self._container.remove(force=force, v=delete_volume)
        self.get_docker_client().client.close()

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    # -- the peer's stdin and stdout ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Raw bytes to the peer's stdin."""
        if self._sock is None:
            raise RuntimeError("the peer is not started")
        getattr(self._sock, "_sock", self._sock).sendall(data)

    def send(self, cmd: str, **fields: Any) -> int:
        """Write one command line; its `id`, which the reply echoes."""
        request_id = next(self._ids)
        self.write(json.dumps({"cmd": cmd, "id": request_id, **fields}).encode() + b"\n")
        return request_id

    def request(self, cmd: str, timeout: float = 30.0, **fields: Any) -> Record:
        """Send a command and return its reply (a `result` or an `error` record)."""
        since = self.mark()
        request_id = self.send(cmd, **fields)
        return self.wait_for(
            lambda r: r.get("type") in ("result", "error") and r.get("id") == request_id,
            f"the reply to {cmd}",
            timeout,
            since,
        )

    def expect(self, event: str, timeout: float = 30.0, since: int = 0, **fields: Any) -> Record:
        """Wait for the first event named `event` whose fields include `fields`, at or after
        record number `since` (`mark()` before a restart: the new run's events only)."""
        return self.wait_for(
            lambda r: (
                r.get("type") == "event"
                and r.get("event") == event
                and all(r.get(k) == v for k, v in fields.items())
            ),
            f"event {event} {fields or ''}",
            timeout,
            since,
        )

    def wait_for(
        self, match: Callable[[Record], bool], what: str, timeout: float, since: int = 0
    ) -> Record:
        """The first record (of the default sink) from number `since` on that `match`es,
        waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self._records[since:]:
                    if match(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self._stderr[-10:])
                    raise TimeoutError(f"no {what} in {timeout} s; stderr tail:\n{tail}")
                self._cond.wait(left)

    def mark(self) -> int:
        """How many records there are so far: a `since` for `expect`."""
        with self._cond:
            return len(self._records)

    def records(self) -> list[Record]:
        """Every stdout record so far (the default sink's)."""
        with self._cond:
            return list(self._records)

    def _collect(self, stream: str, line: str) -> None:
        with self._cond:
            if stream == "stderr":
                self._stderr.append(line)
            else:
                try:
                    record = json.loads(line)
                except ValueError:
                    record = {"type": "garbage", "line": line}
                self._records.append(record if isinstance(record, dict) else {"line": line})
            self._cond.notify_all()


def _pump(sock: Any, sink: LineSink) -> None:
    """Feed the attach stream's stdout and stderr lines to `sink` until the stream ends."""
    partial = {1: b"", 2: b""}
    names = {1: "stdout", 2: "stderr"}
    try:
        for stream, data in frames_iter(sock, tty=False):
            if stream not in partial:
                continue
            buf = partial[stream] + data
            *lines, partial[stream] = buf.split(b"\n")
            for line in lines:
                sink(names[stream], line.decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        pass
    for stream, rest in partial.items():
        if rest:
            sink(names[stream], rest.decode("utf-8", errors="replace"))
