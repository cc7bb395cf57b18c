"""Messages peers exchange on the QUIC control plane, and their validation.

Every message is one JSON object per QUIC stream direction. Everything read from a remote peer
is validated here before the runtime sees it, so a buggy or hostile peer yields a clean refusal
instead of an exception deep inside the runtime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from peer.errors import PeerError
from peer.paths import check_game_id, check_relative_path

PROTOCOL_VERSION = 1
ALPN = "lanpeer/1"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

Message = dict[str, Any]

READY = "Ready"  # downloaded: a root sentinel is committed; may serve and vote
LOCAL_ONLY = "LocalOnly"  # installed without a downloaded root (e.g. a streamed install)


def encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> Message:
    if len(data) > MAX_MESSAGE_BYTES:
        raise PeerError("bad-message", "message too large")
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PeerError("bad-message", f"message is not JSON: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise PeerError("bad-message", "message must be an object with a string 'type'")
    return message


def error_reply(exc: PeerError) -> Message:
    return {"type": "error", "code": exc.code, "message": exc.message}


def raise_for_error(reply: Message, expected: str) -> Message:
    """Turn an `error` reply into a PeerError and check the reply type."""
    if reply.get("type") == "error":
        raise PeerError(str(reply.get("code", "remote-error")), str(reply.get("message", "")))
    if reply.get("type") != expected:
        raise PeerError("bad-message", f"expected {expected!r}, got {reply.get('type')!r}")
    return reply


@dataclass(frozen=True)
class GameSummary:
    """One game root as a scan finds it, and as a peer advertises it."""

    game_id: str
    version: str | None
    downloaded: bool
    installed: bool
    availability: str
    size: int

    def to_json(self) -> Message:
        return {
            "game_id": self.game_id,
            "version": self.version,
            "downloaded": self.downloaded,
            "installed": self.installed,
            "availability": self.availability,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, raw: object) -> GameSummary:
        if not isinstance(raw, dict):
            raise PeerError("bad-message", "game summary must be an object")
        version = raw.get("version")
        availability = raw.get("availability")
        size = raw.get("size", 0)
        if version is not None and not isinstance(version, str):
            raise PeerError("bad-message", "game summary version must be a string")
        if availability not in (READY, LOCAL_ONLY):
            raise PeerError("bad-message", f"unknown availability {availability!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise PeerError("bad-message", "game summary size must be a non-negative integer")
        return cls(
            game_id=check_game_id(raw.get("game_id")),
            version=version,
            downloaded=raw.get("downloaded") is True,
            installed=raw.get("installed") is True,
            availability=availability,
            size=size,
        )


def parse_library(raw: object) -> dict[str, GameSummary]:
    if not isinstance(raw, list):
        raise PeerError("bad-message", "library must be a list of game summaries")
    games = [GameSummary.from_json(item) for item in raw]
    return {g.game_id: g for g in games}


@dataclass(frozen=True)
class LibraryDelta:
    """The change between two library snapshots; `removed` holds IDs only."""

    added: tuple[GameSummary, ...]
    updated: tuple[GameSummary, ...]
    removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)


def library_delta(old: dict[str, GameSummary], new: dict[str, GameSummary]) -> LibraryDelta:
    return LibraryDelta(
        added=tuple(new[g] for g in sorted(new.keys() - old.keys())),
        updated=tuple(new[g] for g in sorted(new.keys() & old.keys()) if new[g] != old[g]),
        removed=tuple(sorted(old.keys() - new.keys())),
    )


def apply_delta(library: dict[str, GameSummary], delta: LibraryDelta) -> dict[str, GameSummary]:
    result = {k: v for k, v in library.items() if k not in delta.removed}
    for game in (*delta.added, *delta.updated):
        result[game.game_id] = game
    return result


@dataclass(frozen=True)
class FileDescriptor:
    """One transferable file of a game root: its size and a SHA-256 per fixed-size chunk.

    The chunk hashes let a receiver verify every chunk it gets from any source against the
    descriptor that the majority of sources agreed on.
    """

    path: str
    size: int
    chunk_size: int
    chunks: tuple[str, ...]

    def to_json(self) -> Message:
        return {
            "path": self.path,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_json(cls, raw: object) -> FileDescriptor:
        if not isinstance(raw, dict):
            raise PeerError("bad-message", "file descriptor must be an object")
        size, chunk_size, chunks = raw.get("size"), raw.get("chunk_size"), raw.get("chunks")
        for name, value in (("size", size), ("chunk_size", chunk_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PeerError("bad-message", f"file descriptor {name} must be an integer >= 0")
        assert isinstance(size, int) and isinstance(chunk_size, int)
        if chunk_size == 0:
            raise PeerError("bad-message", "chunk_size must be positive")
        if not isinstance(chunks, list) or not all(
            isinstance(c, str) and len(c) == 64 for c in chunks
        ):
            raise PeerError("bad-message", "chunks must be a list of SHA-256 hex digests")
        if len(chunks) != chunk_count(size, chunk_size):
            raise PeerError("bad-message", "chunk hash count does not match the file size")
        return cls(check_relative_path(raw.get("path")), size, chunk_size, tuple(chunks))


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a file; an empty file still has one (empty) chunk so it gets transferred."""
    return max(1, -(-size // chunk_size))


def parse_file_list(raw: object) -> tuple[FileDescriptor, ...]:
    if not isinstance(raw, list):
        raise PeerError("bad-message", "files must be a list")
    files = tuple(sorted((FileDescriptor.from_json(f) for f in raw), key=lambda f: f.path))
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise PeerError("bad-message", "duplicate path in file list")
    parents = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    clash = parents.intersection(paths)
    if clash:
        raise PeerError("bad-message", f"path {min(clash)!r} is both a file and a directory")
    return files
