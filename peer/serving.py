"""What this peer serves to others: game descriptors and archive listings on the control plane,
chunks and streamed installs on the fast lane, all behind the same serve gates.

The gates themselves are pure functions in `transfer/serve.py`; this binds them to the node's
live state (games dir, active operations, data token) and to the blocking work behind them.
"""

from __future__ import annotations

from asyncio import StreamWriter
from collections.abc import Callable
from pathlib import Path

from peer.blocking import in_thread
from peer.budgets import Tally
from peer.catalog import Catalog
from peer.errors import PeerError
from peer.protocol import (
    ChunkRequest,
    ErrorReply,
    GameFiles,
    GetGame,
    GetStream,
    Reply,
    Request,
    StreamManifest,
    StreamRequest,
)
from peer.transfer.provider import ListingCache, send_entries
from peer.transfer.serve import (
    DescriptorCache,
    authorize_chunk,
    authorize_stream,
    check_serve_gates,
)
from peer.transfer.upload import Progress, RateLimiter, SendStream, reply


class Serving:
    def __init__(
        self,
        games_dir: Callable[[], Path],
        catalog: Catalog,
        active: Callable[[], frozenset[str]],
        data_token: str,
        unrar: str | None,
        max_upload_rate: int | None,
        tally: Tally | None = None,
    ) -> None:
        self._games_dir = games_dir
        self._catalog = catalog
        self._active = active
        self._token = data_token
        self._descriptors = DescriptorCache()
        self.limiter = RateLimiter(max_upload_rate)
        self.tally = tally or Tally()  # the budgets of every handler and child we serve with
        self._listings = ListingCache(unrar, self.tally)

    async def answer(self, request: Request) -> Reply:
        """Control requests that are not about the link itself: what a game holds."""
        if not isinstance(request, GetGame | GetStream):
            raise ValueError(f"no handler for {type(request).__name__}")
        root = check_serve_gates(self._games_dir(), self._catalog, self._active(), request.game_id)
        try:
            if isinstance(request, GetStream):
                return StreamManifest(root.name, await self._listings.listings(root))
            files = await in_thread(self._descriptors.describe, root, request.chunk_size)
        except OSError as exc:  # a person deleted or replaced a file while we read the root
            why = exc.strerror or type(exc).__name__
            raise PeerError("not-servable", f"{root.name} changed while read: {why}") from None
        return GameFiles(root.name, files)

    def authorize(self, request: ChunkRequest) -> tuple[Path, int, int]:
        gates = (self._games_dir(), self._catalog, self._active())
        return authorize_chunk(*gates, self._token, request)

    def open_stream(self, request: StreamRequest) -> SendStream:
        gates = (self._games_dir(), self._catalog, self._active())
        root = authorize_stream(*gates, self._token, request)
        unrar = self._listings.unrar
        if unrar is None:
            raise PeerError("not-servable", "this peer streams no installs (it has no --unrar)")

        async def send(writer: StreamWriter, progress: Progress, tally: Tally, asker: str) -> None:
            try:  # a first listing extracts the archives under a deadline of its own
                with progress.paused():
                    listings = await self._listings.listings(root)
            except PeerError as exc:
                await reply(writer, ErrorReply.of(exc))
                return
            await send_entries(writer, root, listings, unrar, self.limiter, progress, tally)

        return send
