"""Build the lab's Docker images on an engine that has no registry.

Nothing can be pulled, so both images are made locally:

* ``lanpeer-base:<hash12>``: a Debian bookworm rootfs made on the host by mmdebstrap and imported
  as one layer. There is no ``FROM debian`` anywhere.
* ``lanpeer-peer:<hash12>``: the base plus /opt/venv with lanpeer and its runtime dependencies,
  installed offline, hash-checked, from the runtime part of ``requirements.lock`` (the wheels
  are downloaded on the host, whose CPython 3.11 and glibc 2.36 match bookworm's), using the
  project's ``Dockerfile`` and the engine's classic builder.

Each tag is a hash of the inputs that make the image, so "is the image current?" is a single
``images.get`` and a build happens only when an input changed. A global file lock makes parallel
pytest-xdist workers and concurrent runs build once. With several engines (`--docker-host`), the
image is built once, on the first engine that needs it, and shipped to each other engine under
the same lock (`docker save | docker load` through this host, so an `ssh://` engine needs no
registry either). Prebuild with ``python -m harness.image [--docker-host URL]...``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
from filelock import FileLock

from harness import lockfile
from harness.backends.engines import run_engines

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / ".cache"
BASE_CACHE = CACHE_DIR / "base"
PEER_BUILD = CACHE_DIR / "peer-build"
WHEEL_CACHE = CACHE_DIR / "wheelhouse"

BASE_REPO = "lanpeer-base"
PEER_REPO = "lanpeer-peer"
IMAGE_LABEL = "lanpeer.image"
ROLE_LABEL = "lanpeer.role"

SUITE = "bookworm"
VARIANT = "apt"
COMPONENTS = ("main", "non-free")
# iptables and iproute2 (tc) serve the lab's nemesis (harness/nemesis.py), which runs them in a
# short-lived sidecar sharing a peer's network namespace; the peer itself stays unprivileged.
# fuse3 (fusermount3, libfuse3) serves harness/powerfs, which the power-cut scenarios mount
# under a peer; only their containers get /dev/fuse and SYS_ADMIN.
PACKAGES = (
    "python3",
    "python3-venv",
    "unrar",
    "ca-certificates",
    "iproute2",
    "iptables",
    "procps",
    "fuse3",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BOOKWORM_PYTHON = (3, 11)  # the host builds the wheels, so its Python must match this
# An imported image has no ENV at all. The builder and runtime fall back to the default PATH
# (checked on Engine 20.10), but Config.Env is what people and tools inspect, so say it.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    f"LABEL {IMAGE_LABEL}=1 {ROLE_LABEL}=base",
    'CMD ["/bin/bash"]',
)

LOCK_PATH = Path(tempfile.gettempdir()) / "lanpeer-image.lock"
LOCK_TIMEOUT_S = 1800.0
# Old peer images kept besides the current one, for users outside the lab (a LanpeerContainer
# resolves its image and creates its container a moment later); the lab pins its own (`pin`).
KEEP_OLD_PEER_IMAGES = 2
PIN_LABEL = "lanpeer.pin"

Progress = Callable[[str], None]


def engine_client(url: str, timeout: int = 120) -> docker.DockerClient:
    """A client of the engine at `url`, with the environment's TLS settings. `ssh://` goes
    through paramiko (the SDK's default), which reads ~/.ssh/config (HostName, User,
    IdentityFile, ProxyCommand; not Port: the SDK puts 22 in the URL first) and refuses a host
    key that known_hosts lacks. Not the SDK's
    shell-out to `ssh`: its sockets break `exec_run` (docker/docker-py#3218) and it spawns an
    ssh per request (docker/docker-py#2966)."""
    return docker.from_env(environment={**os.environ, "DOCKER_HOST": url}, timeout=timeout)


def _stderr_progress(line: str) -> None:
    """Default progress sink: stderr, so it shows with `pytest -s` and from `python -m`."""
    print(f"[lanpeer-image] {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _step(progress: Progress, what: str) -> Iterator[None]:
    """Report a step and how long it took; a cold build is minutes and people want to know why."""
    progress(f"{what} ...")
    start = time.monotonic()
    yield
    progress(f"{what}: done in {time.monotonic() - start:.1f}s")


def _make_cache_dir(path: Path) -> None:
    """Create ``path`` under .cache/, which ignores itself so nothing in it gets committed."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# build caches of harness/image.py; never commit\n*\n")


def _digest12(parts: list[tuple[str, bytes]]) -> str:
    """Hash named parts unambiguously (length-prefixed) and keep 12 hex digits for the tag."""
    h = hashlib.sha256()
    for name, data in parts:
        for chunk in (name.encode(), data):
            h.update(len(chunk).to_bytes(8, "big"))
            h.update(chunk)
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Base image


def _mmdebstrap_argv(target: Path, mirror: str) -> list[str]:
    """The whole base recipe as one command line (its source is part of the base tag).

    Variant apt plus the merged-usr hook: minbase would add usrmerge and with it perl (~55 MB)
    to satisfy init-system-helpers; the hook provides usr-is-merged instead. mmdebstrap itself
    removes the apt lists and cache; dpkg path-excludes keep docs, man pages and locales out.
    """
    argv = [
        "mmdebstrap",
        f"--variant={VARIANT}",
        f"--components={','.join(COMPONENTS)}",
        f"--include={','.join(PACKAGES)}",
        "--format=tar",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    ]
    for opt in (
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/locale/*",
        "path-include=/usr/share/locale/locale.alias",
        "path-exclude=/usr/share/lintian/*",
    ):
        argv.append(f"--dpkgopt={opt}")
    # Upstream's deployment runs its unrar sidecar from /usr/local/bin.
    argv.append('--customize-hook=ln -sf /usr/bin/unrar "$1/usr/local/bin/unrar"')
    argv.append('--customize-hook=rm -rf "$1"/var/cache/debconf/*-old "$1"/var/log/apt/eipp*')
    argv += [SUITE, str(target), mirror]
    return argv


def _host_mirror() -> str:
    """The Debian mirror the host's apt uses, so the build goes where the host's apt may go.

    Not part of the tag: every Debian mirror serves the same archive.
    """
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    with contextlib.suppress(OSError):
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and len(line.split()) > 1:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    with contextlib.suppress(OSError):
        for line in legacy.read_text().splitlines():
            words = line.split()
            if words[:1] == ["deb"]:
                uris = [w for w in words[1:] if "://" in w]
                if uris:
                    return uris[0]
    return DEFAULT_MIRROR


def _import_base(client: docker.DockerClient, tarball: Path, tag: str) -> None:
    """Import the rootfs tarball as a one-layer image (docker import; nothing is pulled)."""
    repo, _, version = tag.partition(":")
    client.api.import_image(
        src=str(tarball), repository=repo, tag=version, changes=list(BASE_CHANGES)
    )
    client.images.get(tag)  # the import answers with a JSON stream; make sure the tag exists


def base_image_tag() -> str:
    """The base tag for the current recipe, computed without touching Docker or the network."""
    recipe = {
        "suite": SUITE,
        "variant": VARIANT,
        "components": COMPONENTS,
        "packages": PACKAGES,
        "changes": BASE_CHANGES,
    }
    parts = [
        ("recipe", json.dumps(recipe, sort_keys=True).encode()),
        ("mmdebstrap_argv", inspect.getsource(_mmdebstrap_argv).encode()),
        ("import_base", inspect.getsource(_import_base).encode()),
    ]
    return f"{BASE_REPO}:{_digest12(parts)}"


def _base_tarball(tag: str, progress: Progress) -> Path:
    """Return the cached rootfs tarball for ``tag``, running mmdebstrap only if it is missing.

    The tarball is kept so that a lost base image (prune, engine reset) costs an import, not a
    bootstrap. Tarballs of other recipes are deleted once a new one exists.
    """
    version = tag.partition(":")[2]
    tarball = BASE_CACHE / f"rootfs-{version}.tar"
    if tarball.is_file():
        progress(f"using cached rootfs {tarball.relative_to(ROOT)}")
        return tarball
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed on the host; run scripts/setup.sh")
    _make_cache_dir(BASE_CACHE)
    partial = tarball.with_suffix(".tar.partial")
    log = BASE_CACHE / "mmdebstrap.log"
    mirror = _host_mirror()
    with _step(progress, f"mmdebstrap {SUITE} from {mirror} (about a minute)"):
        with log.open("wb") as out:
            result = subprocess.run(
                _mmdebstrap_argv(partial, mirror),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"mmdebstrap failed ({result.returncode}); see {log}:\n{tail}")
    partial.rename(tarball)
    for old in BASE_CACHE.glob("rootfs-*.tar"):
        if old != tarball:
            old.unlink(missing_ok=True)
    return tarball


def _ensure_base(client: docker.DockerClient, progress: Progress) -> str:
    """Make sure the base image exists; the caller holds the build lock."""
    tag = base_image_tag()
    if _image_exists(client, tag):
        progress(f"{tag} present")
        return tag
    tarball = _base_tarball(tag, progress)
    size_mb = tarball.stat().st_size / 1e6
    with _step(progress, f"importing {tarball.name} ({size_mb:.0f} MB) as {tag}"):
        _import_base(client, tarball, tag)
    return tag


# --------------------------------------------------------------------------------------------
# Peer image


def _packaging_tables(pyproject: Path) -> bytes:
    """The parts of pyproject.toml that go into the image: [build-system] and [project] (name,
    version, dependencies, the entry point). Tool settings (ruff, mypy, pytest) do not."""
    data = tomllib.loads(pyproject.read_text("utf-8"))
    tables = {key: data.get(key) for key in ("build-system", "project")}
    return json.dumps(tables, sort_keys=True).encode()


def _peer_inputs(root: Path) -> list[tuple[str, bytes]]:
    """What defines the peer image: the Dockerfile, the lock, pyproject's packaging tables and
    peer/**. A lock refresh rebuilds it; a lint setting or a test edit does not.

    Bytecode caches are skipped: importing peer/ must not change the tag.
    """
    parts = [
        ("Dockerfile", (root / "Dockerfile").read_bytes()),
        ("requirements.lock", (root / "requirements.lock").read_bytes()),
        ("pyproject.toml:packaging", _packaging_tables(root / "pyproject.toml")),
    ]
    peer = root / "peer"
    for path in sorted(peer.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # deleted by an editor's save-and-rename just now
                continue
            parts.append((path.relative_to(root).as_posix(), data))
    return parts


def _peer_tag_for(root: Path, base_tag: str) -> str:
    """Peer tag of the tree at ``root``; the build procedure's source counts as an input."""
    parts = [
        ("base", base_tag.encode()),
        ("build_peer", inspect.getsource(_build_peer).encode()),
        *_peer_inputs(root),
    ]
    return f"{PEER_REPO}:{_digest12(parts)}"


def peer_image_tag() -> str:
    """The peer tag for the working tree as it is now, computed without building anything."""
    return _peer_tag_for(ROOT, base_image_tag())


def _snapshot_sources(dest: Path) -> None:
    """Copy the build inputs aside, so the wheel and the tag describe the same tree.

    Other people edit peer/ while tests run; building from a snapshot (and hashing the
    snapshot) keeps a half-saved edit from being baked into an image tagged as something else.
    It also keeps setuptools' build/ and egg-info out of the working tree.
    """
    if dest.exists():
        shutil.rmtree(dest)
    _make_cache_dir(dest)
    for name in ("Dockerfile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(ROOT / name, dest / name)
    readme = ROOT / "README.md"
    if readme.is_file():
        shutil.copy2(readme, dest / "README.md")
    else:
        (dest / "README.md").write_text("")
    shutil.copytree(ROOT / "peer", dest / "peer", ignore=shutil.ignore_patterns("__pycache__"))


def _pip(verb: str, args: list[str]) -> None:
    """Run pip (the locked one, in the harness's CPython 3.11, like bookworm's)."""
    pip = [sys.executable, "-m", "pip", verb, "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(
        [*pip, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip {verb} failed ({result.returncode}):\n{result.stderr[-4000:]}")


RUNTIME_LOCK = "requirements.txt"  # in the dependency wheelhouse, beside the wheels


def _deps_wheelhouse(src: Path, progress: Progress) -> Path:
    """Wheels of lanpeer's runtime dependencies as locked, with the runtime part of the lock
    that the image installs them by (`--require-hashes`), cached per that part and host Python.

    Only wheels: a package built here from source would not match its locked hash.
    """
    runtime = lockfile.runtime_lock(
        lockfile.read(src / "requirements.lock"), src / "pyproject.toml"
    )
    key = _digest12(
        [
            ("runtime-lock", runtime.encode()),
            ("python", f"{sys.implementation.cache_tag}-{sys.platform}".encode()),
        ]
    )
    if sys.version_info[:2] != BOOKWORM_PYTHON:
        # Compiled wheels (cryptography, zeroconf, ...) would not match the image's Python.
        raise RuntimeError(
            f"the peer image runs Python {BOOKWORM_PYTHON[0]}.{BOOKWORM_PYTHON[1]} (bookworm); "
            f"build it from a 3.11 interpreter such as .venv/bin/python, not {sys.executable}"
        )
    deps = WHEEL_CACHE / f"deps-{key}"
    if deps.is_dir():
        progress(f"using cached dependency wheels {deps.relative_to(ROOT)}")
        return deps
    partial = WHEEL_CACHE / f"deps-{key}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    _make_cache_dir(partial)
    (partial / RUNTIME_LOCK).write_text(runtime)
    with _step(progress, "pip download lanpeer's locked runtime dependencies"):
        args = ["--only-binary=:all:", "--no-deps", "--require-hashes", "--dest", str(partial)]
        _pip("download", [*args, "--requirement", str(partial / RUNTIME_LOCK)])
    partial.rename(deps)
    for old in WHEEL_CACHE.glob("deps-*"):
        if old != deps:
            shutil.rmtree(old, ignore_errors=True)
    return deps


def _build_peer(client: docker.DockerClient, src: Path, base: str, tag: str, p: Progress) -> None:
    """Wheels on the host (locked ones downloaded, ours built), then the Dockerfile with the
    classic builder."""
    deps = _deps_wheelhouse(src, p)
    own = WHEEL_CACHE / "lanpeer"
    if own.exists():
        shutil.rmtree(own)
    _make_cache_dir(own)
    with _step(p, "pip wheel lanpeer"):
        # With the locked setuptools in this venv: an isolated build would fetch an unlocked one.
        _pip("wheel", ["--no-deps", "--no-build-isolation", "--wheel-dir", str(own), str(src)])
    context = PEER_BUILD / "context"
    if context.exists():
        shutil.rmtree(context)
    _make_cache_dir(context)
    shutil.copy2(src / "Dockerfile", context / "Dockerfile")
    shutil.copytree(deps, context / "wheelhouse" / "deps")
    shutil.copytree(own, context / "wheelhouse" / "lanpeer")
    with _step(p, f"docker build {tag} FROM {base}"):
        try:
            # Labels come from the Dockerfile: the labels= argument appends one uncached
            # LABEL step per label to every build.
            client.images.build(
                path=str(context),
                dockerfile="Dockerfile",
                tag=tag,
                buildargs={"BASE": base},
                pull=False,
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            lines = [
                str(entry.get("stream") or entry.get("error") or "") for entry in exc.build_log
            ]
            tail = "".join(lines)[-4000:]
            raise RuntimeError(f"docker build of {tag} failed: {exc.msg}\n{tail}") from exc
    shutil.rmtree(context, ignore_errors=True)


def _remove_old_peer_images(client: docker.DockerClient, current: str, progress: Progress) -> None:
    """Untag old peer images that no container uses, keeping the newest few (see KEEP_OLD_...).

    Removal is never forced: the engine refuses (409) for an image any container, running or
    stopped, still references, which is exactly "in use".
    """
    images: list[dict[str, Any]] = client.api.images(filters={"label": [f"{ROLE_LABEL}=peer"]})
    old = [img for img in images if current not in (img.get("RepoTags") or [])]
    old.sort(key=lambda img: int(img.get("Created", 0)), reverse=True)
    for img in old[KEEP_OLD_PEER_IMAGES:]:
        tags = [t for t in img.get("RepoTags") or [] if t.startswith(f"{PEER_REPO}:")]
        for ref in tags or [str(img["Id"])]:
            try:
                client.api.remove_image(ref)
                progress(f"removed old image {ref}")
            except docker.errors.APIError as exc:
                progress(f"kept old image {ref}: {exc.explanation or exc}")


def pin(client: docker.DockerClient, tag: str, labels: dict[str, str]) -> bool:
    """Hold `tag` on the engine with a container made from it and never started: the engine
    refuses to remove an image a container references, and `_remove_old_peer_images` never
    forces, so another checkout's build cannot take the image from a run that resolved it. The
    pin carries `labels` and goes with the sweep of the caller's containers. False if the image
    is already gone (removed between its lookup and the pin)."""
    try:
        client.api.create_container(
            tag, command=["true"], labels={**labels, PIN_LABEL: "1"}, network_disabled=True
        )
    except docker.errors.ImageNotFound:
        return False
    return True


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    """True if ``tag`` is in the local store (the only place an image can come from here)."""
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _ship(donor: docker.DockerClient, client: docker.DockerClient, tag: str) -> None:
    """`docker save TAG | docker load`, streamed through this host (no temporary file)."""
    saved = donor.api.get_image(tag)  # a stream of tar chunks
    for status in client.api.load_image(saved):
        if "error" in status:
            raise RuntimeError(f"loading {tag}: {status['error']}")
    client.images.get(tag)


def ensure_peer_image(
    client: docker.DockerClient,
    progress: Progress = _stderr_progress,
    donors: Sequence[str] = (),
) -> str:
    """Return the peer image tag for the current tree, building base and peer images if missing.

    Safe to call from every pytest-xdist worker at once: the fast path is one image lookup, and
    builds happen under a global file lock, rechecking after the lock is taken. When one of the
    `donors` (other engines of the run) already has the image, it is shipped from there instead.
    """
    start = time.monotonic()
    tag = peer_image_tag()
    if _image_exists(client, tag):
        progress(f"{tag} is up to date ({time.monotonic() - start:.2f}s)")
        return tag
    lock = FileLock(str(LOCK_PATH), timeout=LOCK_TIMEOUT_S)
    progress(f"{tag} missing; taking the build lock {LOCK_PATH}")
    with lock:
        if _image_exists(client, tag):
            progress(f"{tag} was built or shipped meanwhile ({time.monotonic() - start:.1f}s)")
            return tag
        for url in donors:
            donor = engine_client(url)
            try:
                if _image_exists(donor, tag):
                    with _step(progress, f"shipping {tag} from {url}"):
                        _ship(donor, client, tag)
                    _remove_old_peer_images(client, tag, progress)
                    return tag
            finally:
                donor.close()
        base = _ensure_base(client, progress)
        src = PEER_BUILD / "src"
        _snapshot_sources(src)
        tag = _peer_tag_for(src, base)  # the tree may have changed since the first look
        if _image_exists(client, tag):
            progress(f"{tag} was built meanwhile ({time.monotonic() - start:.1f}s)")
            return tag
        _build_peer(client, src, base, tag, progress)
        _remove_old_peer_images(client, tag, progress)
    progress(f"{tag} ready in {time.monotonic() - start:.1f}s")
    return tag


def _image_size_mb(client: docker.DockerClient, tag: str) -> float:
    """Uncompressed size as `docker images` shows it."""
    return float(client.images.get(tag).attrs["Size"]) / 1e6


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.image`: prebuild the images so the first test run starts fast."""
    parser = argparse.ArgumentParser(prog="python -m harness.image", description=main.__doc__)
    parser.add_argument(
        "--tags", action="store_true", help="only print the base and peer tags; build nothing"
    )
    parser.add_argument(
        "--docker-host",
        action="append",
        default=[],
        metavar="URL",
        help="an engine to prepare (repeatable); default DOCKER_HOST, else the local socket",
    )
    args = parser.parse_args(argv)
    if args.tags:
        print(base_image_tag())
        print(peer_image_tag())
        return 0
    engines = run_engines(args.docker_host, os.environ)
    for i, url in enumerate(engines):
        client = engine_client(url)
        start = time.monotonic()
        tag = ensure_peer_image(client, donors=engines[:i])
        elapsed = time.monotonic() - start
        base = base_image_tag()
        if _image_exists(client, base):
            print(f"base {base} {_image_size_mb(client, base):.0f} MB", file=sys.stderr)
        print(f"peer {tag} {_image_size_mb(client, tag):.0f} MB on {url}", file=sys.stderr)
        print(f"total {elapsed:.1f}s", file=sys.stderr)
        print(tag)
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
