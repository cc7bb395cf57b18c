"""One `unrar p` pass over an open root archive: a child in its own process group, the pipe its
stdout goes to, and how the pass must end.

A pass is reserved from the child budget, killed with its whole group on the way out (a wrapper
script's children share its pipe, so they must die with it), and its pipe read to its end, so no
process of a pass outlives its listing or stream. unrar reads the archive the peer opened
(`/dev/fd/N`), never a path a link could redirect, and never the peer's stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from peer.budgets import Tally
from peer.errors import PeerError
from peer.transfer.senders import Blocking
from peer.transfer.upload import SEND_SLICE

log = structlog.get_logger("provider")

# `unrar`'s stdout: a pipe of our own, widened to 1 MiB (Linux's default ceiling for an
# unprivileged process), which a serving thread reads or splices into the asker's socket.
PIPE_BUFFER = 1024 * 1024


@contextlib.asynccontextmanager
async def unrar_payload(
    archive: Path, fd: int, unrar: str, tally: Tally, kill_grace: float, purpose: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """One `unrar p` of the open archive `fd` (for a `listing` or a `stream`, as its log line
    says) and the non-blocking read end of its stdout; killed with its group on the way out,
    and its pipe given `kill_grace` to end (it ends once every process holding it is dead)."""
    with tally.reserve("", "child"):
        out, into = os.pipe2(os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):  # a smaller pipe is slower, not wrong
                fcntl.fcntl(into, fcntl.F_SETPIPE_SZ, PIPE_BUFFER)
            proc = await asyncio.create_subprocess_exec(
                unrar,
                "p",
                "-inul",
                "--",
                f"/dev/fd/{fd}",
                stdin=subprocess.DEVNULL,
                stdout=into,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
                start_new_session=True,  # its own process group: a wrapper's children die with it
            )
        except OSError as exc:
            os.close(out)
            raise PeerError("not-servable", f"cannot run {unrar}: {exc}") from None
        finally:
            os.close(into)  # the child holds its own copy
        os.set_blocking(out, False)
        try:
            yield proc, out
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            code: int | None = None
            try:
                async with asyncio.timeout(kill_grace):
                    await Blocking(kill_grace).run(lambda b: drain(b, out))
                    code = await proc.wait()
            except TimeoutError:  # a grandchild left the group and holds the pipe: drop it
                pass
            finally:
                os.close(out)
            log.info("provider stopped", archive=archive.name, purpose=purpose, exit_code=code)


def drain(blocking: Blocking, out: int) -> None:
    """Read the pipe to its end: then no process of the pass holds it any more."""
    while blocking.read(out, SEND_SLICE):
        pass


def ends_here(blocking: Blocking, out: int) -> bool:
    """Whether the pass ends exactly where the listing does (from the serving thread)."""
    return not blocking.read(out, 1)


async def finish(
    proc: asyncio.subprocess.Process, clean_end: bool, unrar: str, archive: Path, within: float
) -> None:
    """The pass must end where the listing does, and `unrar` must say it succeeded, `within`
    seconds of its output's end (TimeoutError)."""
    async with asyncio.timeout(within):
        code = await proc.wait()
    if code != 0 or not clean_end:
        raise PeerError("not-servable", f"{unrar} failed on {archive.name} (exit {code})")
