"""Run a command on a powerfs mount: the peer's games and state dirs on a disk that loses power.

    python3 -m powerfs run --disk D --mount M [--seed NAME=DIR ...] -- COMMAND ...

`run` boots the disk (the first time from the seed directories, each under /NAME on the mount),
mounts it by starting `serve` in a process of its own, waits until the mount is up, runs
COMMAND (after binding /NAME of the mount over DIR for each --bind NAME=DIR, where this process
may mount: a container's powerfs has SYS_ADMIN, the command does not) with this process's stdin
and stdout (the peer's JSON lines pass straight through),
forwards SIGTERM and SIGINT to it, unmounts when it ends and exits with its status.

Killing this process group (SIGKILL to the container, or the local backend's kill) is the power
cut: the mount and everything not synced die with `serve`; running `run` again on the same disk
is the reboot.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from . import configure_logging, log
from .disk import Disk
from .tree import Dir, File, Tree

MOUNT_TIMEOUT_S = 30.0


def seed_tree(seeds: list[tuple[str, Path]]) -> Tree:
    """A fresh tree holding each seed directory's files under /NAME (links and specials are
    skipped: a games root's fixture holds neither)."""
    tree = Tree()

    def copy(src: Path, dest: Dir) -> None:
        for entry in sorted(src.iterdir()):
            if entry.is_symlink():
                continue
            if entry.is_dir():
                sub = Dir(tree.new_id(), mode=entry.stat().st_mode & 0o7777)
                dest.entries[entry.name] = sub
                copy(entry, sub)
            elif entry.is_file():
                info = entry.stat()
                dest.entries[entry.name] = File(
                    tree.new_id(),
                    mode=info.st_mode & 0o7777,
                    mtime_ns=info.st_mtime_ns,
                    data=bytearray(entry.read_bytes()),
                )

    for name, src in seeds:
        top = tree.mkdir("/" + name, 0o755)
        if src.is_dir():
            copy(src, top)
    return tree


def serve(args: argparse.Namespace) -> int:
    from .fuse import serve as serve_fuse

    disk = Disk(Path(args.disk))
    Path(args.disk).mkdir(parents=True, exist_ok=True)
    if disk.formatted():
        tree = disk.boot()
        log.info("powerfs-booted", disk=args.disk, nodes=len(disk.dirs) + len(disk.files))
    else:
        tree = seed_tree([_named_dir(s) for s in args.seed])
        disk.format(tree)
        log.info("powerfs-formatted", disk=args.disk, seeds=args.seed)
    ready = args.ready_fd

    def mounted() -> None:
        if ready is not None:
            os.write(ready, b"1")
            os.close(ready)

    serve_fuse(args.mount, tree, disk, mounted)
    return 0


MS_BIND = 4096
MNT_DETACH = 2


def _bind(source: str, target: str) -> None:
    """mount --bind, by the syscall (the image has no mount(8))."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bind {source} on {target}: {os.strerror(code)}")


def _unbind(target: str) -> None:
    ctypes.CDLL(None, use_errno=True).umount2(target.encode(), MNT_DETACH)


def _named_dir(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or "/" in name:
        raise SystemExit(f"powerfs: bad NAME=DIR {text!r}")
    return name, Path(path)


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("powerfs run: no command after --")
    Path(args.mount).mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    package = __spec__.parent if __spec__ else "powerfs"
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            package,
            "serve",
            "--disk",
            args.disk,
            "--mount",
            args.mount,
            "--ready-fd",
            str(write_end),
            *(f"--seed={s}" for s in args.seed),
        ],
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], MOUNT_TIMEOUT_S)
    if not ready or os.read(read_end, 1) != b"1":
        daemon.kill()
        log.error("powerfs-mount-failed", mount=args.mount, status=daemon.wait())
        return 70
    os.close(read_end)

    binds = [(name, Path(path)) for name, path in map(_named_dir, args.bind)]
    for name, target in binds:
        _bind(str(Path(args.mount) / name), str(target))
    child = subprocess.Popen(command)  # stdin, stdout, stderr: ours

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = child.wait()
    for _name, target in binds:
        _unbind(str(target))
    subprocess.run(["fusermount3", "-u", args.mount], capture_output=True, check=False)
    if status == -signal.SIGKILL:  # the power went (an armed cut): the mount went with it
        log.info("powerfs-power-lost", daemon_status=daemon.wait())
    elif daemon.wait() != 0:
        log.error("powerfs-daemon-failed", status=daemon.returncode)
    return 128 - status if status < 0 else status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="powerfs")
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("run", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--disk", required=True)
        p.add_argument("--mount", required=True)
        p.add_argument("--seed", action="append", default=[], help="NAME=DIR")
        if name == "serve":
            p.add_argument("--ready-fd", type=int)
        else:
            p.add_argument("--bind", action="append", default=[], help="NAME=DIR")
            p.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    configure_logging()
    return serve(args) if args.what == "serve" else run(args)


if __name__ == "__main__":
    sys.exit(main())
