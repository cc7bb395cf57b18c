"""Which connections that have not introduced themselves yet a peer keeps (pure).

A stranger costs a handshake's state and one Hello's buffer, so there are at most `limit` at
once. A bound on the total alone lets one host fill it and lock every honest peer out (one that
re-opens its connections keeps it full), so the bound is also per remote host, and a newcomer is
never refused: when the table is full the oldest stranger of the host holding the most goes.
Whoever floods therefore only evicts its own connections, and an honest newcomer always gets in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Strangers(Generic[T]):
    """Strangers in admission order, each with the host it came from."""

    def __init__(self, limit: int, per_host: int) -> None:
        self.limit = limit
        self.per_host = per_host
        self._hosts: dict[T, str] = {}  # insertion order is admission order

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, item: object) -> bool:
        return item in self._hosts

    def keep(self, still_strange: Callable[[T], bool]) -> None:
        """Forget those that introduced themselves or closed since."""
        self._hosts = {c: h for c, h in self._hosts.items() if still_strange(c)}

    def discard(self, item: T) -> None:
        self._hosts.pop(item, None)

    def admit(self, item: T, host: str) -> list[T]:
        """Admit `item`; returns the strangers it displaces, oldest first, to be closed."""
        evicted: list[T] = []
        same_host = [c for c, h in self._hosts.items() if h == host]
        if len(same_host) >= self.per_host:
            evicted.append(same_host[0])
            del self._hosts[same_host[0]]
        if len(self._hosts) >= self.limit:
            counts = Counter(self._hosts.values())
            most = max(counts.values())
            victim = next(c for c, h in self._hosts.items() if counts[h] == most)
            evicted.append(victim)
            del self._hosts[victim]
        self._hosts[item] = host
        return evicted
