"""Peers as Docker containers on one network per scenario, on one of the run's engines.

The container *is* the peer: its entrypoint is `lanpeer`, and the handle talks to it through the
container's stdin/stdout by attaching before start (as `docker run` does), so no line is missed
and a restart (`docker start` of the same container) keeps its state dir and games root.

A run may use several engines (`--docker-host`, see engines.py): each xdist worker keeps to one,
named in its `DOCKER_HOST`, so a scenario's peers and their bridge network are on one engine.
Every engine is talked to through an explicit client of its own.

Cleanup: every container and network carries `lanpeer.run` and `lanpeer.worker` labels; a lab
removes its own at teardown, each worker sweeps its own at exit, and the controller sweeps the
run on every engine at session finish and stale runs at session start (scenarios/conftest.py).

Importing this module imports the Docker SDK: only the scenario wiring does, and only when the
run uses (or probes for) Docker.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import signal
import sys
import tarfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.utils.socket import frames_iter
from filelock import FileLock

from harness.backends.base import GAMES, STATE, LineSink, PeerSpec
from harness.fixtures_builder import fixture_path
from harness.image import engine_client, ensure_peer_image

STALE_AFTER = dt.timedelta(hours=2)


def labels(run_id: str, worker: str) -> dict[str, str]:
    """`worker` is xdist's worker id ("gw0", ...), or "master" in an undistributed run."""
    return {"lanpeer.test": "1", "lanpeer.run": run_id, "lanpeer.worker": worker}


def engine_problem(url: str) -> str | None:
    """Why the engine at `url` cannot run peers, or None when it can."""
    try:
        client = engine_client(url, timeout=10)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means: no usable engine
        return f"{url}: {type(exc).__name__}: {exc}"
    return None


def _sweep(url: str, filters: dict[str, Any], older_than: dt.timedelta | None = None) -> None:
    client = engine_client(url)
    now = dt.datetime.now(dt.UTC)

    def old(created: str | int) -> bool:
        """`Created` is epoch seconds in a container list, an ISO time in a network's."""
        if older_than is None:
            return True
        if isinstance(created, int):
            stamp = dt.datetime.fromtimestamp(created, dt.UTC)
        else:
            stamp = dt.datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
        return now - stamp > older_than

    # sparse: the list call alone; a full list inspects each container and raises NotFound
    # when a concurrent run removes one in between.
    for c in client.containers.list(all=True, filters=filters, sparse=True):
        if old(c.attrs["Created"]):
            if c.attrs.get("State") == "paused":  # a frozen peer (the nemesis) cannot be killed
                with contextlib.suppress(docker.errors.APIError):
                    c.unpause()
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True, v=True)
    for n in client.networks.list(filters=filters):
        if old(n.attrs["Created"]):
            with contextlib.suppress(docker.errors.APIError):
                n.remove()
    client.close()


def sweep_run(run_id: str, engines: Sequence[str]) -> None:
    for url in engines:
        _sweep(url, {"label": [f"lanpeer.run={run_id}"]})


def sweep_stale(current_run: str, engines: Sequence[str]) -> None:
    """Remove what crashed earlier runs left behind (not a concurrent run's fresh containers)."""
    for url in engines:
        client = engine_client(url)
        runs = {
            (c.attrs.get("Labels") or {}).get("lanpeer.run")
            for c in client.containers.list(
                all=True, filters={"label": ["lanpeer.test=1"]}, sparse=True
            )
        } | {
            n.attrs["Labels"].get("lanpeer.run")
            for n in client.networks.list(filters={"label": ["lanpeer.test=1"]})
        }
        client.close()
        for run in runs - {current_run, None}:
            _sweep(url, {"label": [f"lanpeer.run={run}"]}, older_than=STALE_AFTER)


_worker_sweep_registered = False


def _register_worker_sweep(url: str, run_id: str, worker: str) -> None:
    """Backstop for a worker that dies between tests: sweep its own labels at exit/SIGTERM."""
    global _worker_sweep_registered
    if _worker_sweep_registered:
        return
    _worker_sweep_registered = True
    own = {"label": [f"lanpeer.run={run_id}", f"lanpeer.worker={worker}"]}
    atexit.register(_sweep, url, own)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _fixture_tar(name: str) -> Path:
    """A tar of the fixture's games root, made once and streamed into every container."""
    root = fixture_path(name)
    tar_path = root.with_suffix(".tar")
    with FileLock(str(tar_path) + ".lock"):
        if not tar_path.exists():
            tmp = tar_path.with_suffix(".tar.tmp")
            with tarfile.open(tmp, "w") as tar:
                for entry in sorted(root.iterdir()):
                    tar.add(entry, arcname=entry.name)
            tmp.replace(tar_path)
    return tar_path


class DockerPeer:
    def __init__(self, backend: DockerBackend, spec: PeerSpec) -> None:
        self.name = spec.name
        self.backend = backend
        self.spec = spec
        client = backend.client
        tmpfs = {GAMES: f"size={spec.games_tmpfs}"} if spec.games_tmpfs else None
        if tmpfs and spec.fixture:
            raise RuntimeError("a tmpfs /games cannot be seeded (docker cp cannot reach tmpfs)")
        self.container = client.containers.create(
            backend.image,
            command=["--games-dir", GAMES, "--state-dir", STATE, *spec.peer_args()],
            stdin_open=True,
            tty=False,
            detach=True,
            network=backend.network_name(),
            hostname=spec.name,
            labels={**backend.labels, "lanpeer.peer": spec.name},
            tmpfs=tmpfs,
            environment=spec.env,
        )
        if spec.fixture:
            with open(_fixture_tar(spec.fixture), "rb") as tar:
                self.container.put_archive(GAMES, tar)
        self._sock: Any = None

    def start(self, sink: LineSink) -> None:
        api = self.backend.client.api
        sock = api.attach_socket(
            self.container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        self._sock = sock
        threading.Thread(target=self._pump, args=(sock, sink), daemon=True).start()
        self.container.start()

    @staticmethod
    def _pump(sock: Any, sink: LineSink) -> None:
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

    def write(self, data: bytes) -> None:
        raw = getattr(self._sock, "_sock", self._sock)
        raw.sendall(data)

    def kill(self) -> None:
        try:
            self.container.reload()
            if self.container.status == "paused":
                self.container.unpause()
            self.container.kill()
            self.container.wait(timeout=60)
        except docker.errors.APIError:
            pass

    def exited(self) -> bool:
        try:
            self.container.reload()
        except docker.errors.NotFound:
            return True
        return self.container.status not in ("running", "paused")

    def terminate(self, timeout: float) -> int | None:
        if not self.exited():
            if self.container.status == "paused":
                self.container.unpause()  # a frozen peer cannot act on SIGTERM
            with contextlib.suppress(docker.errors.APIError):
                self.container.kill(signal="SIGTERM")
            try:
                self.container.wait(timeout=timeout)
            except Exception:  # requests' ReadTimeout: still running
                self.kill()
                return None
        return self.exit_status()

    def exit_status(self) -> int | None:
        if not self.exited():
            return None
        return int(self.container.attrs["State"]["ExitCode"])

    def pause(self) -> None:
        self.container.pause()

    def resume(self) -> None:
        self.container.unpause()

    def stop(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True, v=True)

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        rc, out = self.container.exec_run(argv, demux=True)
        stdout, stderr = out if isinstance(out, tuple) else (out, b"")
        body = stdout or b""
        return int(rc), body if rc == 0 else body + (stderr or b"")

    def path(self, rel: str) -> str:
        return f"{GAMES}/{rel}"

    def state_path(self, rel: str) -> str:
        return f"{STATE}/{rel}"


class DockerBackend:
    name = "docker"
    unrar = "/usr/local/bin/unrar"  # the image's sidecar, as upstream ships it

    def __init__(self, run_id: str, worker: str, engine: str, engines: Sequence[str]) -> None:
        """`engine` is this worker's (its `DOCKER_HOST`); `engines` all of the run's, which may
        already hold the image."""
        self.engine = engine
        self.client = engine_client(self.engine)
        donors = [url for url in engines if url != self.engine]
        self.image = ensure_peer_image(self.client, donors=donors)
        self.labels = labels(run_id, worker)
        self.peers: list[DockerPeer] = []
        self.helpers: list[Any] = []  # containers that are not peers (the shaper's relays)
        self._network: Any = None
        _register_worker_sweep(self.engine, run_id, worker)

    def scratch(self, name: str) -> str:
        return f"/tmp/{name}"  # in every container; gone with the container

    def network_name(self) -> str:
        if self._network is None:
            run, worker = self.labels["lanpeer.run"], self.labels["lanpeer.worker"]
            self._network = self.client.networks.create(
                f"lanpeer-{run}-{worker}-{uuid.uuid4().hex[:6]}",
                driver="bridge",
                labels=self.labels,
            )
        return str(self._network.name)

    def create(self, spec: PeerSpec) -> DockerPeer:
        peer = DockerPeer(self, spec)
        self.peers.append(peer)
        return peer

    def net_admin(self, peer: DockerPeer, script: str) -> tuple[int, bytes]:
        """Run `script` as root with NET_ADMIN in `peer`'s network namespace, in a sidecar
        that lives for this one script (harness/nemesis.py); the peer stays unprivileged."""
        try:
            out = self.client.containers.run(
                self.image,
                ["-c", script],
                entrypoint=["sh"],
                network_mode=f"container:{peer.container.id}",
                cap_add=["NET_ADMIN"],
                labels={**self.labels, "lanpeer.role": "nemesis", "lanpeer.peer": peer.name},
                remove=True,
                stdout=True,
                stderr=True,
            )
        except docker.errors.ContainerError as exc:
            return int(exc.exit_status), bytes(exc.stderr or b"")
        return 0, bytes(out)

    def helper(self, name: str, script: str, args: list[str]) -> tuple[Any, str]:
        """A long-lived `python3 -c script args` container on the scenario's network (the
        shaper's relay): the container and its address. Removed with the peers at close."""
        container = self.client.containers.run(
            self.image,
            args,
            entrypoint=["python3", "-c", script],
            detach=True,
            network=self.network_name(),
            hostname=name,
            labels={**self.labels, "lanpeer.role": "helper", "lanpeer.peer": name},
        )
        self.helpers.append(container)
        container.reload()
        networks = container.attrs["NetworkSettings"]["Networks"]
        return container, str(networks[self.network_name()]["IPAddress"])

    def close(self) -> None:
        for helper in self.helpers:
            with contextlib.suppress(docker.errors.APIError):
                helper.remove(force=True, v=True)
        for peer in self.peers:
            peer.stop()
        if self._network is not None:
            with contextlib.suppress(docker.errors.APIError):
                self._network.remove()
        self.client.close()
