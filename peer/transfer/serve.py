"""What this peer serves to others, and whether it may: game descriptors and archive listings
on the control plane, chunks and streamed installs on the fast lane, all behind the same gates.

`check_serve_gates` is the single place that decides whether a game root may leave this peer
(S12): catalog ID, committed sentinel, catalog version, no active operation, and a path that
stays inside the transferable part of the root. `authorize_chunk` adds what a fast-lane request
needs on top (the data token and the byte range), so both lanes share the same gates.
`Serving` binds them to the node's live state (games dir, active operations, data token) and
to the work behind them: descriptors hashed in a thread, listings and entries from
`provider.py`, bytes sent by the lane's serving end (`upload.py`).
"""

from __future__ import annotations

import os
import secrets
from asyncio import StreamWriter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peer import digest
from peer.blocking import in_thread
from peer.budgets import Tally
from peer.catalog import Catalog
from peer.errors import PeerError
from peer.files import open_regular
from peer.library import read_sentinel
from peer.paths import RESERVED_ROOT_NAMES, check_game_id, check_relative_path
from peer.protocol import (
    MAX_DESCRIBED_CHUNKS,
    ChunkRequest,
    ErrorReply,
    FileDescriptor,
    GameFiles,
    GetGame,
    GetStream,
    Reply,
    Request,
    StreamManifest,
    StreamRequest,
    chunk_count,
)
from peer.transfer.provider import ListingCache, send_entries
from peer.transfer.upload import Progress, RateLimiter, SendStream, reply

HASH_BLOCK = 1024 * 1024


def check_serve_gates(
    games_dir: Path,
    catalog: Catalog,
    active_games: set[str] | frozenset[str],
    game_id: object,
    path: object = None,
) -> Path:
    """Return the game root if `game_id` (and `path`, when given) may be served, else refuse."""
    gid = check_game_id(game_id)
    if gid not in catalog:
        raise PeerError("not-servable", f"game {gid} is not in this peer's catalog")
    if gid in active_games:
        raise PeerError("not-servable", f"game {gid} has an operation in progress")
    root = games_dir / gid
    if root.is_symlink():
        raise PeerError("bad-path", f"game root {gid} is a symlink and never served")
    version = read_sentinel(root)
    if version is None:
        raise PeerError("not-servable", f"game {gid} is not downloaded here")
    if version != catalog[gid]:
        raise PeerError(
            "not-servable", f"game {gid} is version {version}, catalog wants {catalog[gid]}"
        )
    if path is not None:
        rel = check_relative_path(path)
        target = root / rel
        real_root = os.path.realpath(root)
        if os.path.commonpath([os.path.realpath(target), real_root]) != real_root:
            raise PeerError("bad-path", f"path {rel!r} leaves the game root")
        try:  # Path.is_file() raises for ENAMETOOLONG, EACCES and the like
            is_file = target.is_file()
        except OSError as exc:
            raise PeerError("not-servable", f"{gid}/{rel} cannot be read here: {exc}") from None
        if not is_file:
            raise PeerError("not-servable", f"{gid}/{rel} is not a file here")
    return root


def authorize_chunk(
    games_dir: Path,
    catalog: Catalog,
    active_games: set[str] | frozenset[str],
    token: str,
    request: ChunkRequest,
) -> tuple[Path, int, int]:
    """The file, offset and length a fast-lane request may read, or a refusal.

    The token comes first, so a host that never said Hello learns nothing about our games.
    """
    check_token(request.token, token)
    root = check_serve_gates(games_dir, catalog, active_games, request.game_id, request.path)
    path = root / request.path
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PeerError("not-servable", f"{request.path} cannot be read here: {exc}") from None
    end = request.offset + request.length
    if end > size:
        raise PeerError(
            "bad-message", f"range {request.offset}+{request.length} runs past the end ({size})"
        )
    return path, request.offset, request.length


def authorize_stream(
    games_dir: Path,
    catalog: Catalog,
    active_games: set[str] | frozenset[str],
    token: str,
    request: StreamRequest,
) -> Path:
    """The game root a streamed-install request may extract, or a refusal (same gates)."""
    check_token(request.token, token)
    return check_serve_gates(games_dir, catalog, active_games, request.game_id)


def check_token(offered: str, token: str) -> None:
    if not secrets.compare_digest(offered.encode(), token.encode()):
        raise PeerError("unauthorised", "bad data token")


def transferable_files(root: Path) -> list[str]:
    """Relative POSIX paths of every regular file a receiver needs, skipping reserved names."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in RESERVED_ROOT_NAMES]
            filenames = [f for f in filenames if f not in RESERVED_ROOT_NAMES]
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                found.append(carriable(root, rel))
    return sorted(found)


def carriable(root: Path, rel: str) -> str:
    """`rel`, if the protocol can carry it; else the game is not servable, and the refusal says
    which file and why (skipping it would hand receivers an incomplete game that looks whole)."""
    try:
        return check_relative_path(rel)
    except PeerError as exc:
        raise PeerError("not-servable", f"{root.name} cannot be offered: {exc.message}") from None


def hash_chunks(path: Path, chunk_size: int) -> tuple[str, ...]:
    """The digest (`peer.digest`) of each `chunk_size` slice of the file, read in 1 MiB blocks
    (flat memory)."""
    digests: list[str] = []
    with os.fdopen(open_regular(path), "rb") as f:  # swapped for a FIFO, it must not hang us
        while True:
            h = digest.hasher()
            remaining = chunk_size
            while remaining:
                block = f.read(min(HASH_BLOCK, remaining))
                if not block:
                    break
                h.update(block)
                remaining -= len(block)
            if remaining == chunk_size and digests:
                break
            digests.append(h.hexdigest())
            if remaining:
                break
    return tuple(digests)


@dataclass
class DescriptorCache:
    """Hashes of served files, keyed by (path, size, mtime) per chunk size, so a file is hashed
    once per layout. Receivers choose the layout; only the `LAYOUTS` most recently asked for
    are kept, so asking in many chunk sizes costs the asker time, not our memory."""

    LAYOUTS = 2
    _layouts: dict[int, dict[tuple[str, int, int], tuple[str, ...]]] = field(default_factory=dict)

    def describe(self, root: Path, chunk_size: int) -> tuple[FileDescriptor, ...]:
        found = [(rel, (root / rel).stat()) for rel in transferable_files(root)]
        total = sum(chunk_count(st.st_size, chunk_size) for _, st in found)
        if total > MAX_DESCRIBED_CHUNKS:
            raise PeerError(
                "not-servable",
                f"{root.name} would take {total} chunks of {chunk_size} bytes to describe;"
                f" at most {MAX_DESCRIBED_CHUNKS} fit a reply: ask in larger chunks",
            )
        cache = self._layouts.pop(chunk_size, {})
        self._layouts[chunk_size] = cache  # most recently asked last
        while len(self._layouts) > self.LAYOUTS:
            del self._layouts[next(iter(self._layouts))]
        files = []
        for rel, st in found:
            key = (str(root / rel), st.st_size, st.st_mtime_ns)
            chunks = cache.get(key)
            if chunks is None:
                chunks = hash_chunks(root / rel, chunk_size)
                if len(chunks) != chunk_count(st.st_size, chunk_size):
                    raise PeerError("not-servable", f"{rel} changed while it was being described")
                cache[key] = chunks
            files.append(FileDescriptor(rel, st.st_size, chunk_size, chunks))
        return tuple(files)


class Serving:
    """The serve gates and the answers behind them, bound to the node's live state."""

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
