"""What one serving handler may hold, and for how long: the single table of server-side bounds.

Every byte a peer serves is read by someone else, who may stop reading, never send a request,
or open thousands of connections. Without bounds each such asker pins a connection, a thread,
a child process and descriptors for good. So every handler gets a progress deadline (bytes must
move within `progress_deadline`), and what it holds is reserved from budgets per remote host and
in total before it is taken; a reservation over budget is refused with `busy`. The README's
"Budgets" table lists the same names and values.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from peer.errors import PeerError


@dataclass(frozen=True)
class Budgets:
    request_deadline: float = 30.0  # s: a lane connection must send its request line within this
    progress_deadline: float = 30.0  # s: a serving handler's bytes must move within this
    kill_grace: float = 5.0  # s: a killed child's output must end within this
    send_slice: int = 4 * 1024 * 1024  # bytes a chunk send may take per progress deadline
    connections_per_host: int = 16  # lane connections open from one remote host
    connections_total: int = 128  # lane connections open from all hosts
    streams_per_host: int = 2  # streamed installs served to one remote host
    streams_total: int = 8  # streamed installs served at once
    children_total: int = 8  # `unrar` processes (streams and listing digests) at once
    descriptors_total: int = 256  # descriptors held by lane handlers and their children


BUDGETS = Budgets()

# What each reserved thing costs in descriptors: a lane socket; a chunk's open file, and the
# socket's duplicate and the wake eventfd of its serving thread (`transfer.senders`); a stream's
# duplicate and eventfd likewise; a child's stdout pipe and the eventfd that drains it at its
# end (its stdin and stderr are /dev/null, opened and closed by the spawn itself).
DESCRIPTORS = {"connection": 1, "file": 3, "stream": 2, "child": 2}


@dataclass
class Tally:
    """Live use of the budgets; `reserve` is the only way in, and releases on the way out."""

    budgets: Budgets = BUDGETS
    total: Counter[str] = field(default_factory=Counter)
    per_host: Counter[tuple[str, str]] = field(default_factory=Counter)

    def _limits(self, kind: str) -> tuple[int | None, int | None]:
        """(per host, in total) for `kind`; an open file is bounded by descriptors alone, a
        child in total only (a listing's has no lane host; a host's streams bound its own)."""
        b = self.budgets
        return {
            "connection": (b.connections_per_host, b.connections_total),
            "stream": (b.streams_per_host, b.streams_total),
            "child": (None, b.children_total),
            "file": (None, None),
        }[kind]

    @contextlib.contextmanager
    def reserve(self, host: str, *kinds: str) -> Iterator[None]:
        """Hold one of each of `kinds` for `host` for the block, or refuse with `busy`."""
        need = Counter(kinds)
        fds = sum(DESCRIPTORS.get(k, 0) * n for k, n in need.items())
        if self.total["descriptor"] + fds > self.budgets.descriptors_total:
            raise PeerError("busy", f"descriptor budget ({self.budgets.descriptors_total}) in use")
        for kind, n in need.items():
            per_host, total = self._limits(kind)
            if total is not None and self.total[kind] + n > total:
                raise PeerError("busy", f"{kind} budget ({total} in all) in use")
            if per_host is not None and self.per_host[(host, kind)] + n > per_host:
                raise PeerError("busy", f"{kind} budget ({per_host} per host) in use by {host}")
        self._add(host, need, fds, 1)
        try:
            yield
        finally:
            self._add(host, need, fds, -1)

    def _add(self, host: str, need: Counter[str], fds: int, sign: int) -> None:
        self.total["descriptor"] += sign * fds
        for kind, n in need.items():
            self.total[kind] += sign * n
            self.per_host[(host, kind)] += sign * n
            if not self.per_host[(host, kind)]:
                del self.per_host[(host, kind)]
