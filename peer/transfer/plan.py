"""Pure download planning: which sources to trust, and which source fetches which chunk.

No sockets and no files here: the fetcher feeds outcomes in and asks what to do next, so every
decision (majority vote, least-loaded split, retry, stealing) is unit-testable.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from peer.errors import PeerError
from peer.protocol import FileDescriptor


@dataclass(frozen=True)
class Chunk:
    path: str
    offset: int
    length: int
    digest: str  # `peer.digest` of the chunk's bytes, from the validated descriptor


Offer = TypeVar("Offer", bound=Hashable)


@dataclass(frozen=True)
class Validated(Generic[Offer]):
    """The offer (descriptors, or archive listings) a plurality of sources agreed on, and who."""

    files: Offer
    sources: tuple[str, ...]
    rejected: tuple[str, ...]


def validate_descriptors(game_id: str, offers: dict[str, Offer]) -> Validated[Offer]:
    """Pick the offer a strict plurality of sources agrees on (e.g. sizes and chunk hashes).

    `offers` maps source id -> what that source offers: file descriptors for a download,
    archive listings for a streamed install; either is compared whole. A tie for first place
    (including the 1-vs-1 conflict of S8/S17) rejects the download: with no majority we cannot
    know which peer is right, and guessing would commit bytes nobody vouched for.
    """
    if not offers:
        raise PeerError("no-peers", f"no peers have game {game_id}")
    votes = Counter(offers.values())
    ranked = votes.most_common()
    winner, top = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == top:
        raise PeerError(
            "ambiguous-metadata",
            f"sources disagree on the files of {game_id} and no version has a majority "
            f"({len(ranked)} variants, {top} vote(s) each at the top)",
        )
    if not winner:
        raise PeerError("bad-metadata", f"sources offer no files for {game_id}")
    agreed = tuple(sorted(s for s, files in offers.items() if files == winner))
    rejected = tuple(sorted(s for s in offers if s not in agreed))
    return Validated(files=winner, sources=agreed, rejected=rejected)


def chunks_of(files: tuple[FileDescriptor, ...]) -> list[Chunk]:
    """Split descriptors into fetchable chunks; an empty file is one zero-length chunk."""
    chunks: list[Chunk] = []
    for f in files:
        for index, digest in enumerate(f.chunks):
            offset = index * f.chunk_size
            chunks.append(Chunk(f.path, offset, min(f.chunk_size, f.size - offset), digest))
    return chunks


def assign_least_loaded(chunks: list[Chunk], sources: tuple[str, ...]) -> dict[str, list[Chunk]]:
    """Give each chunk, largest first, to the source with the fewest planned bytes.

    Ties go to the source named first, so the split is deterministic. With four equal chunks
    and two sources the split is exactly 2+2 (S14).
    """
    if not sources:
        raise ValueError("no sources")
    planned = dict.fromkeys(sources, 0)
    plan: dict[str, list[Chunk]] = {s: [] for s in sources}
    order = sorted(range(len(chunks)), key=lambda i: (-chunks[i].length, i))
    for i in order:
        source = min(sources, key=lambda s: (planned[s], sources.index(s)))
        plan[source].append(chunks[i])
        planned[source] += chunks[i].length
    for queue in plan.values():
        queue.sort(key=lambda c: (c.path, c.offset))
    return plan


@dataclass
class Scheduler:
    """The live chunk plan of one download.

    Each source works through its own queue. A source whose queue runs dry takes a queued (never
    in-flight) chunk from a source that is busy with `depth` chunks already, preferring the one
    with the most bytes still waiting, so a slow peer cannot hold back completion, and an
    idle-but-healthy source keeps the work it was planned.
    A failed chunk returns to a shared retry pool; a source that failed is never asked again
    during this download.

    Learned rates (Syncthing's "shortest queue in seconds"): the fetcher reports, per source,
    the bytes its in-flight chunks have received and for how long it was busy (`observe`).
    Once a source has been busy `window` seconds its rate counts, and work goes where it is
    expected to finish first: a source is not handed a chunk (its own queued one, a retry, or a
    stolen one) that another source would finish `margin` times sooner, counting the bytes
    each already has queued and in flight; such a chunk moves to that source's queue instead.
    Without known rates the rules above apply unchanged.

    End game (libtorrent's): a source with a free lane and nothing left anywhere to queue (no
    queue of its own or of others, no retry) while a chunk is still in flight elsewhere is
    given that chunk as well (`endgame_for`), at most one duplicate per chunk, once the
    holder's rate is known and says it will not finish first anyway (a chunk that has just
    started is not doubled: the idle source asks again a moment later). The first verified copy wins
    (`succeeded`); the fetcher cancels the other.
    """

    queues: dict[str, deque[Chunk]]
    retry: deque[Chunk] = field(default_factory=deque)
    in_flight: dict[Chunk, str] = field(default_factory=dict)
    duplicates: dict[Chunk, str] = field(default_factory=dict)
    done: set[Chunk] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    attempts: Counter[Chunk] = field(default_factory=Counter)
    total: int = 0
    depth: int = 1
    window: float = 0.5  # seconds a source must have been busy before its rate counts
    margin: float = 2.0  # how much sooner another source must finish to take a chunk away
    got: Counter[str] = field(default_factory=Counter)  # bytes received, per source
    busy_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    received: dict[tuple[Chunk, str], int] = field(default_factory=dict)  # per in-flight copy

    @classmethod
    def plan(cls, chunks: list[Chunk], sources: tuple[str, ...], depth: int = 1) -> Scheduler:
        plan = assign_least_loaded(chunks, sources)
        return cls(queues={s: deque(q) for s, q in plan.items()}, total=len(chunks), depth=depth)

    def busy(self, source: str) -> bool:
        lanes = sum(1 for s in self.in_flight.values() if s == source)
        lanes += sum(1 for s in self.duplicates.values() if s == source)
        return lanes >= self.depth

    @property
    def live_sources(self) -> list[str]:
        return [s for s in self.queues if s not in self.dead]

    @property
    def finished(self) -> bool:
        return len(self.done) == self.total

    @property
    def stranded(self) -> bool:
        """Work remains but no live source can do it: the download has failed."""
        return not self.finished and not self.live_sources

    # -- learned rates ---------------------------------------------------------------------

    def observe(self, source: str, seconds: float, received: dict[Chunk, int]) -> None:
        """`source` was busy for `seconds` more; `received` is how many bytes each of its
        in-flight chunks has received so far (totals, not increments)."""
        self.busy_s[source] += max(seconds, 0.0)
        for chunk, total in received.items():
            if chunk in self.done:
                continue
            before = self.received.get((chunk, source), 0)
            self.received[(chunk, source)] = total
            self.got[source] += max(total - before, 0)

    def rate(self, source: str) -> float | None:
        """Bytes per busy second, once the source has been busy `window` seconds."""
        seconds = self.busy_s[source]
        if seconds < self.window or seconds <= 0:
            return None
        return self.got[source] / seconds

    def _remaining(self, chunk: Chunk, source: str) -> int:
        return max(chunk.length - self.received.get((chunk, source), 0), 0)

    def load(self, source: str) -> int:
        """Bytes `source` still has to deliver: its queue and what its chunks still lack."""
        queued = sum(c.length for c in self.queues[source])
        flying = [(c, s) for c, s in self.in_flight.items() if s == source]
        flying += [(c, s) for c, s in self.duplicates.items() if s == source]
        return queued + sum(self._remaining(c, s) for c, s in flying)

    def eta(self, source: str, extra: int = 0) -> float | None:
        """Seconds until `source` would be through its load and `extra` more bytes."""
        rate = self.rate(source)
        if rate is None:
            return None
        if rate <= 0:
            return float("inf")
        return (self.load(source) + extra) / rate

    def _sooner(self, source: str, chunk: Chunk) -> str | None:
        """Another live source expected to finish `chunk` `margin` times sooner, if any."""
        mine = self.eta(source, chunk.length)
        if mine is None:
            return None
        best: tuple[float, str] | None = None
        for other in self.live_sources:
            theirs = self.eta(other, chunk.length) if other != source else None
            if theirs is None or theirs * self.margin >= mine:
                continue
            if best is None or theirs < best[0]:
                best = (theirs, other)
        return best[1] if best else None

    def _may_steal(self, thief: str, donor: str, chunk: Chunk) -> bool:
        mine, theirs = self.eta(thief, chunk.length), self.eta(donor)
        if mine is None or theirs is None:
            return self.busy(donor)
        return mine < theirs

    # -- handing out work ------------------------------------------------------------------

    def next_for(self, source: str) -> Chunk | None:
        if source in self.dead:
            return None
        chunk = None
        while self.queues[source] and chunk is None:
            chunk = self.queues[source].popleft()
            elsewhere = self._sooner(source, chunk)
            if elsewhere is not None:
                self.queues[elsewhere].append(chunk)
                chunk = None
        if chunk is None and self.retry and self._sooner(source, self.retry[0]) is None:
            chunk = self.retry.popleft()
        if chunk is None:
            donors = [
                s
                for s in self.queues
                if s != source and self.queues[s] and self._may_steal(source, s, self.queues[s][-1])
            ]
            if donors:
                timed = all(self.rate(s) is not None for s in donors)
                donor = max(donors, key=self._waiting if timed else self._queued)
                chunk = self.queues[donor].pop()
        if chunk is not None:
            self.in_flight[chunk] = source
            self.attempts[chunk] += 1
        return chunk

    def _waiting(self, donor: str) -> float:
        """How long a donor's queue waits, in seconds (its rate is known)."""
        rate = self.rate(donor) or 0.0
        return self._queued(donor) / rate if rate > 0 else float("inf")

    def _queued(self, donor: str) -> float:
        return float(sum(c.length for c in self.queues[donor]))

    def endgame_for(self, source: str) -> Chunk | None:
        """A chunk in flight on another source for `source` to fetch as well, or None.

        Only once nothing is left to queue anywhere, only into a free lane, at most one
        duplicate per chunk, and only when the holder's learned rate says it finishes later
        than `source` would (an unknown rate of `source` counts as later). The chunk whose
        holder is expected to take longest goes first.
        """
        if source in self.dead or self.busy(source) or self.retry:
            return None
        if any(self.queues.values()):
            return None
        best: tuple[float, Chunk] | None = None
        for chunk, holder in self.in_flight.items():
            if holder == source or chunk in self.duplicates:
                continue
            holder_rate, mine = self.rate(holder), self.eta(source, chunk.length)
            if holder_rate is None:
                continue  # not busy long enough to judge: it may be about to finish
            theirs = self._remaining(chunk, holder) / holder_rate if holder_rate else float("inf")
            if mine is not None and theirs <= mine:
                continue  # the holder is expected to be done first: a duplicate only wastes
            if best is None or theirs > best[0]:
                best = (theirs, chunk)
        if best is None:
            return None
        chunk = best[1]
        self.duplicates[chunk] = source
        self.attempts[chunk] += 1
        return chunk

    def holder(self, chunk: Chunk) -> str | None:
        """The source a chunk was first in flight on (the one a duplicate races)."""
        return self.in_flight.get(chunk)

    # -- outcomes --------------------------------------------------------------------------

    def succeeded(self, chunk: Chunk) -> None:
        """The first verified copy of `chunk` is in place; any other copy is cancelled."""
        self.in_flight.pop(chunk, None)
        self.duplicates.pop(chunk, None)
        for key in [k for k in self.received if k[0] == chunk]:
            del self.received[key]
        self.done.add(chunk)

    def failed(self, chunk: Chunk, source: str) -> None:
        """Mark `source` dead for this download and put its work back for the others.

        A failed duplicate leaves its chunk with the holder; a failed holder leaves it with its
        duplicate, if it has one; otherwise the chunk goes to the retry pool.
        """
        self.received.pop((chunk, source), None)
        if self.duplicates.get(chunk) == source:
            del self.duplicates[chunk]
        elif self.in_flight.get(chunk) == source and chunk in self.duplicates:
            self.in_flight[chunk] = self.duplicates.pop(chunk)
        elif chunk not in self.done:
            self.in_flight.pop(chunk, None)
            self.retry.append(chunk)
        self.dead.add(source)
        self.retry.extend(self.queues[source])
        self.queues[source].clear()
