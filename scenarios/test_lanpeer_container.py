"""`LanpeerContainer` used as another project's tests would use it: no `lab` fixture, no backend,
only the testcontainers module and testcontainers' `Network` on the engine in `DOCKER_HOST`
(this worker's engine; harness/plugin.py names it there).

The README's example is run as written, in a child Python, so the README cannot drift from
what works.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends.docker import labels
from harness.image import engine_client
from harness.labrun import LAB_RUN
from harness.lanpeer_container import LanpeerContainer, Network

pytestmark = pytest.mark.requires_docker("a testcontainers module needs a Docker engine")

ROOT = Path(__file__).parents[1]
EXAMPLE_HEADING = "### A peer in your own tests (testcontainers)"


def readme_example() -> str:
    """The first Python block under the README's testcontainers heading."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(EXAMPLE_HEADING) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {EXAMPLE_HEADING!r}"
    return match.group(1)


def test_the_readme_example_runs_as_written(request: pytest.FixtureRequest) -> None:
    # The child inherits this worker's engine; the JUnit XML says which it was.
    request.node.user_properties.append(("engine", os.environ["DOCKER_HOST"]))
    done = subprocess.run(
        [sys.executable, "-c", readme_example()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert re.search(r"alienswarm: \d+ bytes", done.stdout), done.stdout


def test_a_peer_container_attached_killed_restarted_paused(
    request: pytest.FixtureRequest, worker_id: str
) -> None:
    engine = os.environ["DOCKER_HOST"]  # this worker's, as harness/plugin.py set it
    request.node.user_properties.append(("engine", engine))
    client = engine_client(engine)
    request.addfinalizer(client.close)
    own = labels(request.config.stash[LAB_RUN].run_id, worker_id)  # the run's sweeps cover it
    network = Network(docker_network_kw={"labels": own})
    with (
        network,
        LanpeerContainer(games_tmpfs="8m", labels={**own, "lanpeer.peer": "solo"}).with_network(
            network
        ) as peer,
    ):
        first = peer.expect("local-peer-ready")
        # Attached before start: the peer's very first line was read.
        assert peer.records()[0]["event"] == "cli-started"
        wrapped = peer.get_wrapped_container()
        assert {k: wrapped.labels[k] for k in own} == own
        assert client.containers.get(wrapped.id).labels == wrapped.labels  # on this engine
        rc, mounts = peer.exec(["cat", "/proc/mounts"])
        assert rc == 0
        games = next(line for line in mounts.decode().splitlines() if " /games " in line)
        assert games.startswith("tmpfs") and "size=8192k" in games, games

        assert peer.request("status")["type"] == "result"
        peer.kill()
        assert peer.exit_status() == 137

        since = peer.mark()
        peer.restart()  # the same container: its /state (so its identity) is kept
        again = peer.expect("local-peer-ready", since=since)
        assert again["peer_id"] == first["peer_id"]

        peer.pause()
        assert not peer.exited()
        peer.resume()
        assert peer.request("status")["type"] == "result"
        assert peer.terminate(20) == 0
    assert not client.containers.list(all=True, filters={"id": wrapped.id})
    assert not client.networks.list(names=[network.name])


def test_a_sweep_says_what_the_engine_refused_to_remove(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweeps never fail a run, but a network the daemon will not remove (it once kept a
    stale endpoint of a killed container) is named with the daemon's reason, not dropped."""
    import docker.errors
    import docker.models.networks

    from harness.backends.docker import sweep_run

    run = f"sweeptest{os.getpid()}"
    engine = os.environ["DOCKER_HOST"]
    client = engine_client(engine)
    network = client.networks.create(f"lanpeer-{run}", labels=labels(run, "sweep"))
    try:
        refusal = docker.errors.APIError("refused", explanation="has active endpoints")

        def refuse(self: object) -> None:
            raise refusal

        with monkeypatch.context() as patch:
            patch.setattr(docker.models.networks.Network, "remove", refuse)
            assert sweep_run(run, [engine]) == [f"network lanpeer-{run}: has active endpoints"]
        assert sweep_run(run, [engine]) == []
        assert not client.networks.list(filters={"label": [f"lanpeer.run={run}"]})
    finally:
        with contextlib.suppress(docker.errors.APIError):
            network.remove()
        client.close()


def test_a_pinned_image_outlives_another_checkouts_cleanup() -> None:
    """The lab pins the peer image it resolved (`harness.image.pin`): another checkout's build,
    which removes old peer images without force, cannot take it from a run still using it, and
    the run's sweep lifts the pin."""
    import docker.errors

    from harness.backends.docker import sweep_run
    from harness.image import ensure_peer_image, pin

    run = f"pintest{os.getpid()}"
    engine = os.environ["DOCKER_HOST"]
    client = engine_client(engine)
    tag = f"lanpeer-pintest:{run}"  # an image of its own, never the peer image itself
    donor = client.api.create_container(ensure_peer_image(client), command=["true"])
    try:
        client.api.commit(donor["Id"], repository="lanpeer-pintest", tag=run)
        assert pin(client, tag, labels(run, "pin"))
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.remove_image(tag)  # what another checkout's cleanup does
        assert refused.value.status_code == 409, refused.value
        assert sweep_run(run, [engine]) == []
        client.api.remove_image(tag)
        assert not pin(client, tag, labels(run, "pin")), "a removed image cannot be pinned"
    finally:
        client.api.remove_container(donor["Id"], force=True)
        sweep_run(run, [engine])
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.api.remove_image(tag, force=True)
        client.close()
