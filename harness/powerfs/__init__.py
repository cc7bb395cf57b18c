"""powerfs: a FUSE filesystem that loses what was never made durable, as a power cut does.

A SIGKILL keeps the kernel's page cache, so a peer that forgets an `fsync` survives every kill
test. powerfs (the idea of Jepsen's lazyfs) keeps a peer's files in memory and writes to its
disk only what POSIX promises survives a power cut: a file's bytes as of its last `fsync` or
`fdatasync`, and a directory's entries (create, rename, unlink, mkdir) as of the last `fsync` of
that directory. Killing the process that holds the mount is then a power cut; mounting the same
disk again is the reboot.

    tree.py      pure: the live filesystem in memory (nodes, POSIX rules, errno on refusal)
    disk.py      the durable image: what fsync and fsyncdir made durable, and the boot from it
    fuse.py      the mfusepy shell: FUSE operations onto the tree, fsyncs onto the disk
    __main__.py  the supervisor: mount, run a command on the mount, unmount when it ends

The package uses relative imports and the standard library only (plus mfusepy in the FUSE
shell), so the lab can copy it into a peer container and run it as `python3 -m powerfs`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import structlog

log = structlog.get_logger("powerfs")


def configure_logging() -> None:
    """structlog JSON lines on stderr, as the peer's: the lab reads both the same way (its
    health check flags error-level lines; it waits on the cut's own line)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


ARM = "cut-at-sync"  # in the disk dir: the lab's arming of a cut (fuse.py reads it)
MOUNT_GAMES = "games"
MOUNT_STATE = "state"


def run_argv(
    python: str,
    package: str,
    disk: str,
    mount: str,
    seeds: dict[str, str],
    command: list[str],
    bind: dict[str, str] | None = None,
) -> list[str]:
    """The command line that runs `command` on a powerfs mount at `mount` (see __main__):
    `seeds` fill the disk on its first boot (NAME -> DIR, each under /NAME on the mount), `bind`
    puts /NAME of the mount over DIR while the command runs (in a container, where powerfs may)."""
    seed_args = [f"--seed={name}={path}" for name, path in seeds.items()]
    bind_args = [f"--bind={name}={path}" for name, path in (bind or {}).items()]
    return [
        *(python, "-m", package, "run", "--disk", disk, "--mount", mount),
        *seed_args,
        *bind_args,
        "--",
        *command,
    ]


def shipped_files() -> dict[str, Path]:
    """What a peer container needs to run `python3 -m powerfs`: this package's modules and
    mfusepy's one file (the venv's, as locked), by the name each takes under PYTHONPATH."""
    here = Path(__file__).parent
    spec = importlib.util.find_spec("mfusepy")
    if spec is None or spec.origin is None:
        raise RuntimeError("mfusepy is not installed; run scripts/setup.sh")
    files = {f"powerfs/{p.name}": p for p in sorted(here.glob("*.py"))}
    files["mfusepy.py"] = Path(spec.origin)
    return files
