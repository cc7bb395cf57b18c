"""Every message peers exchange, declared once: the QUIC control plane and the fast lane.

Each message is a frozen `msgspec.Struct` tagged by its `type` field, in the style of aioquic's
`quic/events.py`: one small class per message, all in this file. Decoding validates fully at
the boundary (types, ranges, patterns, missing and extra fields; a boolean is never an integer),
so a buggy or hostile peer yields one `bad-message` refusal and the node only ever sees typed
values. msgspec does that validation in one pass from the bytes, with depth and integer limits,
which is why it is used here rather than hand-written checks.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeVar

import msgspec

from peer import digest
from peer.errors import ERROR_CODES, ErrorCode, PeerError
from peer.paths import GAME_ID_PATTERN, check_file_list, check_game_id, check_relative_path

# 3: ids bound to keys (mutual TLS); GetGame names the chunk size. 4: every archive entry in a
# stream listing carries the SHA-256 of its extracted bytes. 5: chunk and entry digests are
# BLAKE3 (`peer.digest`), the fields that carry them say `digest`, not `sha256`.
PROTOCOL_VERSION = 5
ALPN = "lanpeer/5"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a control message, whole
MAX_INTRO_BYTES = 8 * 1024 * 1024  # a Hello or HelloAck listing MAX_GAMES games fits
MAX_LANE_LINE = 4096  # a fast-lane request or header line

Availability = Literal["Ready", "LocalOnly"]
READY: Final = "Ready"  # downloaded: a root sentinel is committed; may serve and vote
LOCAL_ONLY: Final = "LocalOnly"  # installed without a downloaded root (e.g. a streamed install)

Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PeerId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}\Z")]
GameId = Annotated[str, msgspec.Meta(pattern=GAME_ID_PATTERN)]
Token = Annotated[str, msgspec.Meta(max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
Digest = Annotated[str, msgspec.Meta(pattern=digest.DIGEST_PATTERN)]  # `peer.digest`'s, hex
Address = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:\[\]-]{1,253}:[0-9]{1,5}\Z")]
Version = Annotated[str, msgspec.Meta(max_length=256)]
MAX_GAMES = 10_000
MAX_FILES = 200_000
MAX_CHUNK = 1024 * 1024 * 1024
ChunkSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_CHUNK)]
# A GameFiles reply must fit in MAX_MESSAGE_BYTES: a source refuses to describe a game in more
# chunks than this (a chunk costs 67 bytes: its digest, quoted, and a comma).
MAX_DESCRIBED_CHUNKS = 200_000


class _Value(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A value that travels inside messages; compared and hashed by content."""


class _Message(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """A whole message; its `type` on the wire is the class's tag."""


# -- values -------------------------------------------------------------------------------------


class GameSummary(_Value, frozen=True):
    """One game root as a scan finds it, and as a peer advertises it."""

    game_id: GameId
    version: Version | None
    downloaded: bool
    installed: bool
    availability: Availability
    size: Count

    def __post_init__(self) -> None:
        check_game_id(self.game_id)

    def to_json(self) -> dict[str, object]:
        return msgspec.structs.asdict(self)


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a file; an empty file still has one (empty) chunk so it gets transferred."""
    return max(1, -(-size // chunk_size))


class FileDescriptor(_Value, frozen=True):
    """One transferable file of a game root: its size and a digest (`peer.digest`) per
    fixed-size chunk.

    The chunk digests let a receiver verify every chunk it gets from any source against the
    descriptor that the majority of sources agreed on.
    """

    path: Text
    size: Count
    chunk_size: ChunkSize
    chunks: Annotated[tuple[Digest, ...], msgspec.Meta(max_length=MAX_DESCRIBED_CHUNKS)]

    def __post_init__(self) -> None:
        check_relative_path(self.path)
        if len(self.chunks) != chunk_count(self.size, self.chunk_size):
            raise ValueError("chunk hash count does not match the file size")


EMPTY_DIGEST = digest.EMPTY


class ArchiveEntry(_Value, frozen=True):
    """One member of a root archive, as a streamed install extracts it into `local/`.

    `digest` (`peer.digest`) is of the bytes the source's own extraction produced: CRC32 (from the
    archive header) is no defence against a liar, so a streamed entry is installed only when
    its bytes match the digest the plurality of sources agreed on. A folder's is the empty one.
    """

    path: Text
    size: Count
    crc32: Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
    is_dir: bool
    digest: Digest

    def __post_init__(self) -> None:
        check_relative_path(self.path, reserved=False)
        if self.is_dir and (self.size, self.digest) != (0, EMPTY_DIGEST):
            raise ValueError("a folder entry holds no bytes")


class ArchiveListing(_Value, frozen=True):
    """A root archive's members in archive order: what a source's stream will carry."""

    name: Text
    solid: bool
    entries: Annotated[tuple[ArchiveEntry, ...], msgspec.Meta(max_length=MAX_FILES)]


# -- the control plane --------------------------------------------------------------------------


class _Intro(_Message, frozen=True):
    """What a peer says about itself when a link opens: who, where, and what it serves."""

    proto: int
    peer_id: PeerId
    listen_addr: Address
    data_port: Port
    data_token: Token
    rev: Count
    games: Annotated[tuple[GameSummary, ...], msgspec.Meta(max_length=MAX_GAMES)]

    def __post_init__(self) -> None:
        if self.proto != PROTOCOL_VERSION:
            raise PeerError(
                "incompatible",
                f"peer speaks protocol {self.proto}, we speak {PROTOCOL_VERSION}",
            )
        if len({g.game_id for g in self.games}) != len(self.games):
            raise ValueError("a game is listed twice")


class Hello(_Intro, frozen=True, tag="hello"):
    """The dialling peer's introduction; answered by `HelloAck`."""


class HelloAck(_Intro, frozen=True, tag="hello-ack"):
    """The answering peer's introduction."""


class Ping(_Message, frozen=True, tag="ping"):
    peer_id: PeerId


class Pong(_Message, frozen=True, tag="pong"):
    pass


class Goodbye(_Message, frozen=True, tag="goodbye"):
    """The sender is leaving: drop it now rather than waiting for it to go stale (S10)."""

    peer_id: PeerId


class Ok(_Message, frozen=True, tag="ok"):
    pass


class DuplicateIdentity(_Message, frozen=True, tag="duplicate-identity"):
    """The sender sees two live processes presenting `peer_id` (one state dir, copied): it keeps
    the first, and tells both. Sent as a request, or as the reply to the refused Hello."""

    peer_id: PeerId
    addrs: Annotated[tuple[Address, ...], msgspec.Meta(min_length=1, max_length=2)]


class LibraryDelta(_Message, frozen=True, tag="library-delta"):
    """What changed in the sender's advertised library between two revisions."""

    peer_id: PeerId
    from_rev: Count
    to_rev: Count
    added: Annotated[tuple[GameSummary, ...], msgspec.Meta(max_length=MAX_GAMES)] = ()
    updated: Annotated[tuple[GameSummary, ...], msgspec.Meta(max_length=MAX_GAMES)] = ()
    removed: Annotated[tuple[GameId, ...], msgspec.Meta(max_length=MAX_GAMES)] = ()

    def __post_init__(self) -> None:
        if self.to_rev <= self.from_rev:
            raise ValueError("to_rev must follow from_rev")
        for game_id in self.removed:
            check_game_id(game_id)

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)


class GetGame(_Message, frozen=True, tag="get-game"):
    """Ask a source for the descriptors of one game root, hashed in the asker's chunk size.

    The asker names the layout so that every honest source describes the same bytes the same
    way: the vote is on content, never on a source's local tuning.
    """

    game_id: GameId
    chunk_size: ChunkSize

    def __post_init__(self) -> None:
        check_game_id(self.game_id)


class GameFiles(_Message, frozen=True, tag="game-files"):
    game_id: GameId
    files: Annotated[tuple[FileDescriptor, ...], msgspec.Meta(max_length=MAX_FILES)]

    def __post_init__(self) -> None:
        check_file_list([f.path for f in self.files])


class GetStream(_Message, frozen=True, tag="get-stream"):
    """Ask a source what a streamed install of one game would extract (its archive listings)."""

    game_id: GameId

    def __post_init__(self) -> None:
        check_game_id(self.game_id)


class StreamManifest(_Message, frozen=True, tag="stream-manifest"):
    game_id: GameId
    archives: Annotated[tuple[ArchiveListing, ...], msgspec.Meta(max_length=1000)]

    def __post_init__(self) -> None:
        entries = [e for a in self.archives for e in a.entries]
        check_file_list([e.path for e in entries if not e.is_dir])
        files = {e.path for e in entries if not e.is_dir}
        if any(e.path in files for e in entries if e.is_dir):
            raise ValueError("an entry is both a file and a directory")


class ErrorReply(_Message, frozen=True, tag="error"):
    """A refusal. Codes we do not know arrive as `remote-error`, with the text kept."""

    code: Annotated[str, msgspec.Meta(max_length=64)]
    message: Text

    def to_error(self) -> PeerError:
        code: ErrorCode = self.code if self.code in ERROR_CODES else "remote-error"  # type: ignore[assignment]
        return PeerError(code, self.message)

    @classmethod
    def of(cls, exc: PeerError) -> ErrorReply:
        return cls(exc.code, exc.message[:4096])


Request = Hello | Ping | Goodbye | LibraryDelta | GetGame | GetStream | DuplicateIdentity
Reply = HelloAck | Pong | Ok | GameFiles | StreamManifest | DuplicateIdentity | ErrorReply


# -- the fast lane -------------------------------------------------------------------------------


class ChunkRequest(_Message, frozen=True, tag="get-chunk"):
    """One fast-lane request: `length` bytes of `path` from `offset`, with the data token."""

    token: Token
    game_id: GameId
    path: Text
    offset: Count
    length: Count

    def __post_init__(self) -> None:
        check_game_id(self.game_id)
        check_relative_path(self.path)


class ChunkHeader(_Message, frozen=True, tag="chunk"):
    """Sent before the raw bytes of a granted chunk."""

    length: Count


class StreamRequest(_Message, frozen=True, tag="get-entries"):
    """Stream a game's archives, extracted: an `EntryHeader` and its raw bytes per file."""

    token: Token
    game_id: GameId

    def __post_init__(self) -> None:
        check_game_id(self.game_id)


class EntryHeader(_Message, frozen=True, tag="entry"):
    """Precedes exactly `size` raw bytes of the file entry `path`."""

    path: Text
    size: Count


class StreamEnd(_Message, frozen=True, tag="end"):
    """Every entry was sent and the provider exited cleanly."""


LaneRequest = ChunkRequest | StreamRequest
LaneReply = ChunkHeader | EntryHeader | StreamEnd | ErrorReply


# -- encoding and decoding ------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
# Annotated, not cast at use: older msgspec types Decoder(Union) as Decoder[Any], newer
# releases as Decoder[the union]; both fit these annotations, and no cast goes stale.
_requests: msgspec.json.Decoder[Request] = msgspec.json.Decoder(Request)
_replies: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)
_lane_requests: msgspec.json.Decoder[LaneRequest] = msgspec.json.Decoder(LaneRequest)
_lane_replies: msgspec.json.Decoder[LaneReply] = msgspec.json.Decoder(LaneReply)


def encode(message: _Message) -> bytes:
    return _encoder.encode(message)


T = TypeVar("T")


def _decode(decoder: msgspec.json.Decoder[T], data: bytes, limit: int) -> T:
    if len(data) > limit:
        raise PeerError("bad-message", f"message of {len(data)} bytes exceeds {limit}")
    try:
        return decoder.decode(data)
    except PeerError:  # a __post_init__ check with its own code (bad-path, incompatible...)
        raise
    except msgspec.ValidationError as exc:
        raise PeerError("bad-message", f"invalid message: {exc}") from None
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
        raise PeerError("bad-message", f"message is not JSON: {exc}") from None


def decode_request(data: bytes) -> Request:
    return _decode(_requests, data, MAX_MESSAGE_BYTES)


def decode_reply(data: bytes) -> Reply:
    return _decode(_replies, data, MAX_MESSAGE_BYTES)


def decode_lane_request(data: bytes) -> LaneRequest:
    return _decode(_lane_requests, data, MAX_LANE_LINE)


def decode_lane_reply(data: bytes) -> LaneReply:
    return _decode(_lane_replies, data, MAX_LANE_LINE)


def expect(reply: Reply, kind: type[T]) -> T:
    """The reply if it is a `kind`; an error reply becomes its PeerError; anything else refuses."""
    if isinstance(reply, ErrorReply):
        raise reply.to_error()
    if not isinstance(reply, kind):
        raise PeerError("bad-message", f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
