"""Peers as Docker containers on one network per scenario, on one of the run's engines.

Each peer is a `LanpeerContainer` (harness/lanpeer_container.py, a testcontainers module): the
container *is* the peer, attached to before start so no line is missed, and a restart (`docker
start` of the same container) keeps its state dir and games root. A scenario's network is
testcontainers' `Network`. `DockerBackend.container` is the one place a `PeerSpec` becomes
container options.

A run may use several engines (`--docker-host`, see engines.py): each xdist worker keeps to one,
named in its `DOCKER_HOST`, which testcontainers' clients read, so a scenario's peers and their
bridge network are on one engine. The worker's own client (image, sidecars, helpers) is made for
that engine explicitly; the controller's sweeps make one per engine.

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
import io
import signal
import sys
import tarfile
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors

from harness import powerfs
from harness.backends.base import GAMES, STATE, LineSink, PeerSpec
from harness.image import engine_client, ensure_peer_image, pin
from harness.lanpeer_container import LanpeerContainer, Network

STALE_AFTER = dt.timedelta(hours=2)
# testcontainers' clients: the SDK's own ssh:// transport (paramiko), as engine_client's.
CLIENT_KW: dict[str, Any] = {"use_ssh_client": False, "timeout": 120}
POWER_MOUNT = "/power"  # powerfs's mount; bound onto /games and /state for the peer
POWER_DISK = "/disk"  # powerfs's durable image, in the container's own layer
POWER_CODE = "/opt/lab"  # harness/powerfs and mfusepy, copied in at create


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


def _sweep(url: str, filters: dict[str, Any], older_than: dt.timedelta | None = None) -> list[str]:
    """Remove the matching containers, then networks; returns what the engine refused to
    remove (a network it still believes has endpoints, say), each with the engine's reason."""
    client = engine_client(url)
    now = dt.datetime.now(dt.UTC)
    refused: list[str] = []

    def old(created: str | int) -> bool:
        """`Created` is epoch seconds in a container list, an ISO time in a network's."""
        if older_than is None:
            return True
        if isinstance(created, int):
            stamp = dt.datetime.fromtimestamp(created, dt.UTC)
        else:
            stamp = dt.datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
        return now - stamp > older_than

    def remove(what: str, action: Any) -> None:
        try:
            action()
        except docker.errors.NotFound:
            pass  # gone meanwhile (a concurrent sweep): what we wanted
        except docker.errors.APIError as exc:
            refused.append(f"{what}: {exc.explanation or exc}")

    # sparse: the list call alone; a full list inspects each container and raises NotFound
    # when a concurrent run removes one in between.
    for c in client.containers.list(all=True, filters=filters, sparse=True):
        if old(c.attrs["Created"]):
            if c.attrs.get("State") == "paused":  # a frozen peer (the nemesis) cannot be killed
                with contextlib.suppress(docker.errors.APIError):
                    c.unpause()
            remove(f"container {c.id[:12]}", lambda c=c: c.remove(force=True, v=True))
    for n in client.networks.list(filters=filters):
        if old(n.attrs["Created"]):
            remove(f"network {n.name}", n.remove)
    client.close()
    return refused


def sweep_run(run_id: str, engines: Sequence[str]) -> list[str]:
    """Remove everything of run `run_id`; returns what the engines refused to remove."""
    return [left for url in engines for left in _sweep(url, {"label": [f"lanpeer.run={run_id}"]})]


def sweep_stale(current_run: str, engines: Sequence[str]) -> list[str]:
    """Remove what crashed earlier runs left behind (not a concurrent run's fresh containers);
    returns what the engines refused to remove."""
    refused: list[str] = []
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
            left = _sweep(url, {"label": [f"lanpeer.run={run}"]}, older_than=STALE_AFTER)
            refused.extend(left)
    return refused


_pinned: set[tuple[str, str]] = set()  # (engine, image) this worker holds a pin on


def _pinned_image(
    client: docker.DockerClient, engine: str, donors: Sequence[str], own: dict[str, str]
) -> str:
    """The peer image of this tree, pinned on `engine` for the rest of this worker's run (one
    pin per image; it goes with the worker's sweep). Another checkout's build that removes it
    before the pin is taken only makes this build it again."""
    for _ in range(3):
        tag = ensure_peer_image(client, donors=donors)
        if (engine, tag) in _pinned or pin(client, tag, own):
            _pinned.add((engine, tag))
            return tag
    raise RuntimeError(f"the peer image kept being removed from {engine} before it was pinned")


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


def _powerfs_tar() -> bytes:
    """harness/powerfs and mfusepy as a tar to unpack at /, landing under POWER_CODE."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, path in powerfs.shipped_files().items():
            tar.add(path, arcname=f"{POWER_CODE.lstrip('/')}/{name}")
    return out.getvalue()


def _power_options(spec: PeerSpec) -> dict[str, Any]:
    """A power peer's container: powerfs is PID 1. It seeds its disk from /games and /state on
    the first boot, mounts /power, binds /power/games and /power/state over /games and /state
    (so the peer, the lab's commands and its manifests all see the mount at the usual paths)
    and runs lanpeer (the container's command follows the entrypoint) under setpriv with no
    capabilities: SYS_ADMIN and /dev/fuse are for the mount alone."""
    dirs = {powerfs.MOUNT_GAMES: GAMES, powerfs.MOUNT_STATE: STATE}
    peer = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", "lanpeer"]
    argv = powerfs.run_argv("python3", "powerfs", POWER_DISK, POWER_MOUNT, dirs, peer, bind=dirs)
    return {
        "entrypoint": argv,
        "env": {**spec.env, "PYTHONPATH": POWER_CODE},
        "devices": ["/dev/fuse:/dev/fuse:rwm"],
        "cap_add": ["SYS_ADMIN"],
    }


class DockerPeer:
    """A `PeerProcess` over a `LanpeerContainer`, created (and seeded) at once, started later."""

    def __init__(self, backend: DockerBackend, spec: PeerSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.container = backend.container(spec).create()
        if spec.power:
            self.container.get_wrapped_container().put_archive("/", _powerfs_tar())

    def start(self, sink: LineSink) -> None:
        self.container.with_sink(sink).start()

    def write(self, data: bytes) -> None:
        self.container.write(data)

    def kill(self) -> None:
        self.container.kill()

    def exited(self) -> bool:
        return self.container.exited()

    def terminate(self, timeout: float) -> int | None:
        return self.container.terminate(timeout)

    def exit_status(self) -> int | None:
        return self.container.exit_status()

    def arm_power_cut(self, syncs: int) -> None:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            data = str(syncs).encode()
            info = tarfile.TarInfo(f"{POWER_DISK.lstrip('/')}/{powerfs.ARM}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        # put_archive reaches the container's own layer whether it runs or not
        self.container.get_wrapped_container().put_archive("/", out.getvalue())

    def pause(self) -> None:
        self.container.pause()

    def resume(self) -> None:
        self.container.resume()

    def stop(self) -> None:
        self.container.stop()

    def id(self) -> str:
        return self.container.get_container_id()

    def run(self, argv: list[str]) -> tuple[int, bytes]:
        wrapped = self.container.get_wrapped_container()
        rc, out = wrapped.exec_run(argv, demux=True)
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
        """`engine` is this worker's (its `DOCKER_HOST`, which testcontainers' clients read);
        `engines` all of the run's, which may already hold the image."""
        self.engine = engine
        self.client = engine_client(self.engine)
        donors = [url for url in engines if url != self.engine]
        self.labels = labels(run_id, worker)
        self.image = _pinned_image(self.client, self.engine, donors, self.labels)
        self.peers: list[DockerPeer] = []
        self.helpers: list[Any] = []  # containers that are not peers (the shaper's relays)
        self._network: Network | None = None
        _register_worker_sweep(self.engine, run_id, worker)

    def scratch(self, name: str) -> str:
        return f"/tmp/{name}"  # in every container; gone with the container

    def network(self) -> Network:
        """The scenario's bridge network (testcontainers' `Network`, made on first use)."""
        if self._network is None:
            network = Network(
                docker_client_kw=CLIENT_KW,
                docker_network_kw={"driver": "bridge", "labels": self.labels},
            )
            run, worker = self.labels["lanpeer.run"], self.labels["lanpeer.worker"]
            network.name = f"lanpeer-{run}-{worker}-{uuid.uuid4().hex[:6]}"  # not a bare uuid
            self._network = network.create()
        return self._network

    def network_name(self) -> str:
        return self.network().name

    def container(self, spec: PeerSpec) -> LanpeerContainer:
        """Every option a peer's container is created with, from its `PeerSpec`."""
        if spec.power and spec.games_tmpfs:
            raise ValueError("a power peer's /games is powerfs, not a tmpfs")
        options: dict[str, Any] = _power_options(spec) if spec.power else {"env": dict(spec.env)}
        return LanpeerContainer(
            self.image,
            fixture=spec.fixture,
            games_tmpfs=spec.games_tmpfs,
            args=spec.args,
            mdns=spec.mdns,
            docker_client_kw=CLIENT_KW,
            hostname=spec.name,
            labels={**self.labels, "lanpeer.peer": spec.name},
            **options,
        ).with_network(self.network())

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
                network_mode=f"container:{peer.id()}",
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
