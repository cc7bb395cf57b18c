"""Serving threads: a chunk's or a stream's bytes sent with blocking calls, off the event loop.

The loop woke for every drained socket buffer and copied every slice of a stream through
asyncio's buffers: a source spent twice the raw sender's CPU on a chunk, and a stored archive
streamed at 0.30 of `unrar p` (issue 20). A serving thread instead `sendfile`s a chunk's range,
or `splice`s unrar's pipe into the asker's socket, in the kernel.

The descriptors stay non-blocking, as the loop made them, so every wait is a `poll` that the
thread bounds by the progress deadline (bytes must move within it, or TimeoutError, as the
loop's own deadline would have said) and that the loop can cut short (`Blocking.stop`). The
asker's socket is a duplicate: the transport may close its own at any time, and a duplicate is
never another file that reused the number.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from peer.blocking import in_thread
from peer.budgets import BUDGETS

T = TypeVar("T")

# A serving thread is held for a whole chunk, stream or listing pass (and a child's pipe drained
# at its end): connections and children are bounded by the budgets, so are these, and they are
# not the default executor's, which the peer's fsyncs need.
SENDERS = ThreadPoolExecutor(
    BUDGETS.connections_total + BUDGETS.children_total, thread_name_prefix="sender"
)
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class Stopped(OSError):
    """The loop stopped the thread (its task was cancelled)."""

    def __init__(self) -> None:
        super().__init__(errno.ECANCELED, "the send was stopped")


class Blocking:
    """Blocking I/O for one serving thread, on non-blocking descriptors, every wait bounded
    by `seconds` without progress and cut short by `stop`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._owned = [self._wake]
        self._lock = threading.Lock()
        self._closed = False

    def own(self, fd: int) -> int:
        """Close `fd` with the thread's other descriptors when its work ends."""
        self._owned.append(fd)
        return fd

    async def run(self, work: Callable[[Blocking], T]) -> T:
        """Run `work` in a serving thread, then close what it held. A cancel stops it and
        returns once it has finished, so nothing it holds outlives the awaiting task."""

        def thread() -> T:
            try:
                return work(self)
            finally:
                self.close()

        return await in_thread(thread, executor=SENDERS, stop=self.stop)

    def stop(self) -> None:
        """From the loop: wake the thread's waits, which then raise `Stopped`."""
        with self._lock, contextlib.suppress(OSError):
            if not self._closed:
                os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        """From the thread, as its work ends."""
        with self._lock:
            self._closed = True
            for fd in self._owned:
                os.close(fd)

    def wait(self, fd: int, events: int, stalled: str) -> None:
        """Until `fd` is ready for `events` (or hung up), within the deadline."""
        poller = select.poll()
        poller.register(fd, events)
        poller.register(self._wake, select.POLLIN)
        ready = poller.poll(self.seconds * 1000)
        if not ready:
            raise TimeoutError(f"{stalled} for {self.seconds} s")
        if any(ready_fd == self._wake for ready_fd, _ in ready):
            raise Stopped()

    def pause(self, seconds: float) -> None:
        """Wait on our own upload cap: no deadline, but a stop still ends it."""
        if seconds > 0 and select.select([self._wake], [], [], seconds)[0]:
            raise Stopped()

    def write(self, sock: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(sock, view) :]
            except BlockingIOError:
                self.wait(sock, select.POLLOUT, "the asker read nothing")

    def sendfile(self, sock: int, file: int, offset: int, count: int) -> int:
        """`count` bytes of `file` from `offset`, or fewer where the file ends."""
        done = 0
        while done < count:
            try:
                n = os.sendfile(sock, file, offset + done, count - done)
            except BlockingIOError:
                self.wait(sock, select.POLLOUT, "the asker read nothing")
                continue
            if n == 0:
                break
            done += n
        return done

    def splice(self, pipe: int, sock: int, count: int) -> int:
        """Up to `count` bytes from `pipe` into `sock` in the kernel; 0 once the pipe ends."""
        while True:
            try:
                return os.splice(pipe, sock, count, flags=SPLICE_FLAGS)
            except BlockingIOError:  # either side: wait for both, then try again
                self.wait(sock, select.POLLOUT, "the asker read nothing")
                self.wait(pipe, select.POLLIN, "the provider wrote nothing")

    def read(self, pipe: int, size: int) -> bytes:
        """Up to `size` bytes from `pipe`; b"" once it ends."""
        while True:
            try:
                return os.read(pipe, size)
            except BlockingIOError:
                self.wait(pipe, select.POLLIN, "the provider wrote nothing")


async def to_asker(
    writer: asyncio.StreamWriter, seconds: float, work: Callable[[Blocking, int], T]
) -> T:
    """Run `work` in a serving thread, handing it a duplicate of the asker's socket. The
    transport stops reading first: the asker sends nothing more, and an end of stream read by
    the loop would close the transport while the thread still sends."""
    blocking = Blocking(seconds)
    transport = writer.transport
    if isinstance(transport, asyncio.Transport):
        transport.pause_reading()
    sock = blocking.own(os.dup(writer.get_extra_info("socket").fileno()))
    return await blocking.run(lambda b: work(b, sock))
