"""An in-memory fast lane and node context for the transfer tests (tests/test_fetch.py,
tests/test_stream_receiver.py), as httpx's `MockTransport` is an in-memory transport.

The test gives each source host a handler (the chunk bytes it sends, or the stream items it
sends) and each source's peer id a canned control reply; the mocks only route, record and
check what a real peer would refuse: a request must carry its source's port, token and game.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from peer.errors import PeerError
from peer.events import Event
from peer.protocol import (
    ChunkRequest,
    EntryHeader,
    GetGame,
    GetStream,
    LaneRequest,
    Reply,
    StreamRequest,
)
from peer.transfer.lane import ChunkSink, StreamSink
from peer.transfer.sources import Source

GAME = "g1"
PORT = 7000

ChunkHandler = Callable[[ChunkRequest], AsyncIterator[bytes]]
StreamHandler = Callable[[StreamRequest], AsyncIterator[EntryHeader | bytes]]


def source(name: str) -> Source:
    """The source called `name`: host `name`, the lane's port, and the token the lane checks."""
    return Source(f"id-{name}", f"{name}:4000", name, PORT, f"token-{name}")


class MockLane:
    """Routes each lane request to its host's handler, after recording and checking it (a
    request without its source's port, token and game is refused, as a real peer would)."""

    def __init__(self) -> None:
        self.chunks: dict[str, ChunkHandler] = {}
        self.streams: dict[str, StreamHandler] = {}
        self.chunk_requests: list[tuple[str, ChunkRequest]] = []
        self.stream_requests: list[tuple[str, StreamRequest]] = []

    def _admit(self, host: str, port: int, request: LaneRequest) -> None:
        if port != PORT or request.token != f"token-{host}" or request.game_id != GAME:
            raise PeerError("unauthorised", f"{host}: wrong port, token or game")

    async def fetch(self, host: str, port: int, request: ChunkRequest, sink: ChunkSink) -> None:
        self.chunk_requests.append((host, request))
        self._admit(host, port, request)
        assert host in self.chunks, f"{host} serves no chunks here"
        async for piece in self.chunks[host](request):
            sink.write(piece)

    async def stream(self, host: str, port: int, request: StreamRequest, sink: StreamSink) -> None:
        """The handler's items, handed to `sink` from a thread as `TcpLane` does; a handler
        that ends has reached the stream's end, one that raises has been cut."""
        self.stream_requests.append((host, request))
        self._admit(host, port, request)
        assert host in self.streams, f"{host} streams nothing here"
        async for item in self.streams[host](request):
            if isinstance(item, EntryHeader):
                await asyncio.to_thread(sink.entry, item)
            else:
                await asyncio.to_thread(sink.write, item)
        await asyncio.to_thread(sink.end)

    def asked(self, host: str) -> list[tuple[str, int, int]]:
        """The (path, offset, length) of every chunk asked of `host`, in order."""
        return [(r.path, r.offset, r.length) for h, r in self.chunk_requests if h == host]


class MockContext:
    """A node as a transfer sees it (`TransferContext`): every event recorded, canned control
    replies by peer id (a `PeerError` is raised as the refusal), and a `MockLane`."""

    def __init__(self, asks: type[GetGame] | type[GetStream]) -> None:
        self.asks = asks
        self.lane = MockLane()
        self.replies: dict[str, Reply | PeerError] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: Event, /, **fields: Any) -> None:
        self.events.append((event, fields))

    async def request_peer(self, peer_id: str, message: GetGame | GetStream) -> Reply:
        assert isinstance(message, self.asks) and message.game_id == GAME, message
        reply = self.replies[peer_id]
        if isinstance(reply, PeerError):
            raise reply
        return reply

    def named(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == name]
