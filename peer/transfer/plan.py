"""Pure download planning: which sources to trust, and which source fetches which chunk.

No sockets and no files here: the fetcher feeds outcomes in and asks what to do next, so every
decision (majority vote, least-loaded split, retry, stealing) is unit-testable.
"""

from __future__ import annotations

from collections import Counter, deque
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
    sha256: str


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
    with the most bytes still waiting, so a slow peer cannot hold back completion, no chunk is
    ever fetched twice at once, and an idle-but-healthy source keeps the work it was planned.
    A failed chunk returns to a shared retry pool; a source that failed is never asked again
    during this download.
    """

    queues: dict[str, deque[Chunk]]
    retry: deque[Chunk] = field(default_factory=deque)
    in_flight: dict[Chunk, str] = field(default_factory=dict)
    done: set[Chunk] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    attempts: Counter[Chunk] = field(default_factory=Counter)
    total: int = 0
    depth: int = 1

    @classmethod
    def plan(cls, chunks: list[Chunk], sources: tuple[str, ...], depth: int = 1) -> Scheduler:
        plan = assign_least_loaded(chunks, sources)
        return cls(queues={s: deque(q) for s, q in plan.items()}, total=len(chunks), depth=depth)

    def busy(self, source: str) -> bool:
        return sum(1 for s in self.in_flight.values() if s == source) >= self.depth

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

    def next_for(self, source: str) -> Chunk | None:
        if source in self.dead:
            return None
        chunk = None
        if self.queues[source]:
            chunk = self.queues[source].popleft()
        elif self.retry:
            chunk = self.retry.popleft()
        else:
            donors = [s for s in self.queues if s != source and self.queues[s] and self.busy(s)]
            if donors:
                donor = max(donors, key=lambda s: sum(c.length for c in self.queues[s]))
                chunk = self.queues[donor].pop()
        if chunk is not None:
            self.in_flight[chunk] = source
            self.attempts[chunk] += 1
        return chunk

    def succeeded(self, chunk: Chunk) -> None:
        self.in_flight.pop(chunk, None)
        self.done.add(chunk)

    def failed(self, chunk: Chunk, source: str) -> None:
        """Mark `source` dead for this download and put its work back for the others."""
        self.in_flight.pop(chunk, None)
        self.retry.append(chunk)
        self.dead.add(source)
        self.retry.extend(self.queues[source])
        self.queues[source].clear()
