"""What every kind of transfer keeps the same books on: its sources (their addresses, the node
context that reaches them, the first question asked of all of them at once: what do you
offer?), the events about one source, whose fault a failure is (a source's refusal, or our own
disk), and the figures a finished transfer reports.

A download (`fetch.py`) and a streamed install (`stream.py`) each build on this alone, never on
each other."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from peer.errors import PeerError
from peer.events import Event
from peer.output import Emit
from peer.protocol import GetGame, GetStream, Reply
from peer.transfer.gather import gather_with_grace
from peer.transfer.lane import Lane

Offer = TypeVar("Offer")

OFFER_GRACE = 5.0  # seconds the other sources get once one has offered (at least)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Source:
    peer_id: str
    addr: str
    host: str
    data_port: int
    data_token: str


class TransferContext(Protocol):
    """What a transfer needs from the node: its events, its control links and a fast lane."""

    @property
    def emit(self) -> Emit: ...

    @property
    def lane(self) -> Lane: ...

    async def request_peer(self, peer_id: str, message: GetGame | GetStream) -> Reply: ...


def source_event(
    ctx: TransferContext, event: Event, game_id: str, source: Source, **fields: Any
) -> None:
    """An event about one source of a transfer: each names the game and the source alike."""
    ctx.emit(event, game_id=game_id, peer_id=source.peer_id, peer_addr=source.addr, **fields)


def refusal(exc: PeerError) -> dict[str, str]:
    """The `code` and `reason` fields of an event that reports a refusal."""
    return {"code": exc.code, "reason": exc.message}


class LocalWriteError(Exception):
    """Writing to our own disk failed (ENOSPC, EIO): no source is to blame, abort the transfer.

    Deliberately not an OSError, so the transport does not mistake it for a dead source.
    """


async def collect_offers(
    ctx: TransferContext,
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


def figures(
    total_bytes: int, started: float, chunks: int, bytes_per_source: dict[str, int]
) -> dict[str, Any]:
    """The fields of `download-finished`, for a download or a streamed install."""
    duration = max(time.monotonic() - started, 1e-6)
    mib_per_s = total_bytes / MIB / duration
    return {
        "bytes": total_bytes,
        "duration_ms": round(duration * 1000, 3),
        "mib_per_s": round(mib_per_s, 3),
        "mbit_per_s": round(mib_per_s * 8.388608, 3),
        "chunks": chunks,
        "bytes_per_source": bytes_per_source,
    }
