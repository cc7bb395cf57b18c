"""The sources of a transfer, as the fetchers see them: their addresses, the node context that
reaches them, and the first question asked of all of them at once (what do you offer?)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from peer.errors import PeerError
from peer.events import Event
from peer.output import Emit
from peer.protocol import FileDescriptor, GameFiles, GetGame, GetStream, Reply, expect
from peer.transfer.gather import gather_with_grace
from peer.transfer.lane import Lane

Offer = TypeVar("Offer")

OFFER_GRACE = 5.0  # seconds the other sources get once one has offered (at least)


@dataclass(frozen=True)
class Source:
    peer_id: str
    addr: str
    host: str
    data_port: int
    data_token: str


@dataclass(frozen=True)
class FetchSettings:
    chunk_size: int  # the layout every source is asked to describe the files in
    depth: int
    progress_interval: float
    rate_window: float = 0.5  # seconds a source must be busy before its rate counts
    replan_interval: float = 0.5  # an idle source looks again this often (rates change)


class FetchContext(Protocol):
    """What a download needs from the node: its events, its control links and a fast lane."""

    @property
    def emit(self) -> Emit: ...

    @property
    def lane(self) -> Lane: ...

    async def request_peer(self, peer_id: str, message: GetGame | GetStream) -> Reply: ...


def source_event(
    ctx: FetchContext, event: Event, game_id: str, source: Source, **fields: Any
) -> None:
    """An event about one source of a transfer: each names the game and the source alike."""
    ctx.emit(event, game_id=game_id, peer_id=source.peer_id, peer_addr=source.addr, **fields)


def refusal(exc: PeerError) -> dict[str, str]:
    """The `code` and `reason` fields of an event that reports a refusal."""
    return {"code": exc.code, "reason": exc.message}


async def collect_offers(
    ctx: FetchContext,
    game_id: str,
    sources: list[Source],
    request: GetGame | GetStream,
    read: Callable[[Reply], Offer],
) -> dict[str, Offer]:
    """Ask every source at once; a source that refuses or answers nonsense is skipped.

    Once one source has offered, the others get a grace period (`gather.py`); one still silent
    then is skipped. When every source was skipped, the refusal says why (each source's
    reason), not merely that nobody has the game.
    """
    skipped: list[str] = []

    async def ask(source: Source) -> Offer | None:
        try:
            return read(await ctx.request_peer(source.peer_id, request))
        except PeerError as exc:
            skipped.append(f"{source.addr}: {exc.code}: {exc.message}")
            source_event(ctx, "download-source-skipped", game_id, source, **refusal(exc))
            return None

    answers, late = await gather_with_grace([ask(s) for s in sources], OFFER_GRACE)
    for i in late:
        slow = PeerError("peer-unreachable", "no offer in time, while other sources offered")
        skipped.append(f"{sources[i].addr}: {slow.code}: {slow.message}")
        source_event(ctx, "download-source-skipped", game_id, sources[i], **refusal(slow))
    offers = {s.peer_id: a for s, a in zip(sources, answers, strict=True) if a is not None}
    if not offers and skipped:
        raise PeerError("no-peers", f"no source could offer {game_id}: " + "; ".join(skipped))
    return offers


def files_of(request: GetGame) -> Callable[[Reply], tuple[FileDescriptor, ...]]:
    def read(reply: Reply) -> tuple[FileDescriptor, ...]:
        offer = expect(reply, GameFiles)
        if offer.game_id != request.game_id:
            raise PeerError("bad-message", f"asked for {request.game_id}, got {offer.game_id}")
        if any(f.chunk_size != request.chunk_size for f in offer.files):
            raise PeerError("bad-message", f"asked for {request.chunk_size}-byte chunks")
        return tuple(sorted(offer.files, key=lambda f: f.path))

    return read
