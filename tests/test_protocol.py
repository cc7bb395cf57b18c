"""The declared protocol: every message decodes into a typed value or is refused, never more.

Hostile shapes are tried against every decoder: wrong JSON types (a number or a string where a
list is expected), booleans posing as integers, missing and extra fields, values out of range,
paths that leave a game root, and arbitrary bytes and JSON values (hypothesis).
"""

from __future__ import annotations

import json
from typing import Any, get_args

import msgspec
import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from peer.advert import library_delta
from peer.errors import PeerError
from peer.mesh import apply_delta
from peer.protocol import (
    EMPTY_DIGEST,
    MAX_LANE_LINE,
    PROTOCOL_VERSION,
    ChunkHeader,
    ChunkRequest,
    ErrorReply,
    FileDescriptor,
    GameFiles,
    GameSummary,
    GetGame,
    Goodbye,
    Hello,
    HelloAck,
    LaneReply,
    LaneRequest,
    LibraryDelta,
    Ok,
    Ping,
    Pong,
    Reply,
    Request,
    StreamManifest,
    decode_lane_reply,
    decode_lane_request,
    decode_reply,
    decode_request,
    encode,
    expect,
)

H = "a" * 64
PID = "0" * 31 + "1"


def summary(gid: str, version: str = "1") -> GameSummary:
    return GameSummary(gid, version, True, False, "Ready", 10)


def hello_fields() -> dict[str, Any]:
    return {
        "type": "hello",
        "proto": PROTOCOL_VERSION,
        "peer_id": PID,
        "listen_addr": "10.0.0.2:4000",
        "data_port": 4000,
        "data_token": "t",
        "rev": 0,
        "games": [summary("bfbc2").to_json()],
    }


def raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def refusal(decode: Any, data: bytes) -> str:
    with pytest.raises(PeerError) as err:
        decode(data)
    return err.value.code


REQUESTS = [
    Hello(**{k: v for k, v in hello_fields().items() if k not in ("type", "games")}, games=()),
    Ping(PID),
    Goodbye(PID),
    LibraryDelta(PID, 0, 1, added=(summary("a"),), removed=("b",)),
    GetGame("bfbc2", 65536),
]
REPLIES = [
    HelloAck(PROTOCOL_VERSION, PID, "h:1", 1, "t", 0, (summary("a"),)),
    Pong(),
    Ok(),
    GameFiles("a", (FileDescriptor("a.eti", 3, 8, (H,)),)),
    ErrorReply("not-servable", "no"),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_every_request_round_trips(message: Any) -> None:
    assert decode_request(encode(message)) == message


@pytest.mark.parametrize("message", REPLIES, ids=lambda m: type(m).__name__)
def test_every_reply_round_trips(message: Any) -> None:
    assert decode_reply(encode(message)) == message


def test_lane_messages_round_trip() -> None:
    request = ChunkRequest("t", "bfbc2", "bfbc2.eti", 0, 16)
    assert decode_lane_request(encode(request)) == request
    assert decode_lane_reply(encode(ChunkHeader(16))) == ChunkHeader(16)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"games": 5}, "a number where a list is expected"),
        ({"games": "bfbc2"}, "a string where a list is expected"),
        ({"rev": True}, "a boolean is not an integer"),
        ({"rev": -1}, "revisions are never negative"),
        ({"rev": 10**40}, "integers beyond the range"),
        ({"data_port": 0}, "port 0"),
        ({"data_port": 70000}, "port out of range"),
        ({"peer_id": "short"}, "peer ids are 32 hex"),
        ({"peer_id": PID + "\n"}, "a trailing newline is not part of an id"),
        ({"listen_addr": "nohost"}, "an address needs a port"),
        ({"extra": 1}, "extra fields"),
        ({"games": [{"game_id": "../x"}]}, "a summary missing fields"),
        ({"games": [{**summary("a").to_json(), "downloaded": 1}]}, "1 is not true"),
        ({"games": [{**summary("a").to_json(), "availability": "Downloading"}]}, "states"),
        ({"games": [summary("a").to_json(), summary("a").to_json()]}, "a game listed twice"),
    ],
)
def test_hostile_hellos_are_refused(change: dict[str, Any], why: str) -> None:
    assert refusal(decode_request, raw({**hello_fields(), **change})) == "bad-message", why


def test_missing_fields_are_refused_one_by_one() -> None:
    for field in hello_fields():
        message = {k: v for k, v in hello_fields().items() if k != field}
        assert refusal(decode_request, raw(message)) == "bad-message", field


def test_another_protocol_version_is_incompatible() -> None:
    assert refusal(decode_request, raw({**hello_fields(), "proto": 1})) == "incompatible"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "library-delta", "peer_id": PID, "from_rev": 0, "to_rev": 1, "removed": 5},
        {"type": "library-delta", "peer_id": PID, "from_rev": 0, "to_rev": 1, "removed": "ab"},
        {"type": "library-delta", "peer_id": PID, "from_rev": 0, "to_rev": "1"},
        {"type": "library-delta", "peer_id": PID, "from_rev": 2, "to_rev": 1},
        {"type": "library-delta", "peer_id": PID, "from_rev": 0, "to_rev": 1, "removed": [".."]},
        {"type": "get-game", "game_id": None},
        {"type": "get-game", "game_id": ["bfbc2"]},
        {"type": "get-game", "game_id": "BFBC2"},
        {"type": "get-game", "game_id": "bfbc2\n"},
        {"type": "get-game", "game_id": "a..b"},
        {"type": "unknown-kind"},
        {"type": "hello-ack"},
    ],
)
def test_hostile_requests_are_refused(message: dict[str, Any]) -> None:
    assert refusal(decode_request, raw(message)) in {"bad-message", "bad-game-id"}


def files(*paths: str) -> dict[str, Any]:
    entries = [{"path": p, "size": 1, "chunk_size": 8, "chunks": [H]} for p in paths]
    return {"type": "game-files", "game_id": "a", "files": entries}


@pytest.mark.parametrize(
    "paths",
    [
        *(["../x"], ["/etc/passwd"], ["local/x"], [".local.backup/x"], ["a", "a"], ["a", "a/b"]),
        *(["a/./b"], ["a\\b"], ["a\x00b"], [""]),
    ],
)
def test_hostile_file_lists_are_refused(paths: list[str]) -> None:
    assert refusal(decode_reply, raw(files(*paths))) in {"bad-message", "bad-path"}


def test_chunk_count_must_match_size() -> None:
    message = files("a")
    message["files"][0].update(size=17, chunks=[H, H])
    assert refusal(decode_reply, raw(message)) == "bad-message"
    message["files"][0]["chunks"] = [H, H, H]
    reply = decode_reply(raw(message))
    assert isinstance(reply, GameFiles) and reply.files[0].size == 17


@pytest.mark.parametrize(
    "change",
    [
        {"path": None},
        {"offset": True},
        {"length": -1},
        {"offset": 1.5},
        {"token": None},
        {"path": "../../etc/passwd"},
        {"game_id": None},
    ],
)
def test_hostile_chunk_requests_are_refused(change: dict[str, Any]) -> None:
    request = {"type": "get-chunk", "token": "t", "game_id": "a", "path": "a", "offset": 0}
    assert refusal(decode_lane_request, raw({**request, "length": 1, **change})) in {
        "bad-message",
        "bad-path",
        "bad-game-id",
    }
    missing = refusal(decode_lane_request, raw(request))
    assert missing == "bad-message", "a request without its length"


@pytest.mark.parametrize(
    "data",
    [b"\xff", b"[]", b'{"no":"type"}', b"{" * 5000, b"[" * 100_000, b"", b"null"],
    ids=["not-utf8", "array", "no-type", "deep-objects", "deep-arrays", "empty", "null"],
)
def test_undecodable_bytes_are_refused(data: bytes) -> None:
    for decode in (decode_request, decode_reply, decode_lane_request, decode_lane_reply):
        assert refusal(decode, data) == "bad-message"


def test_oversized_lane_line_is_refused_before_parsing() -> None:
    assert refusal(decode_lane_request, b" " * 5000 + b"{}") == "bad-message"


def test_unknown_error_codes_arrive_as_remote_error() -> None:
    reply = decode_reply(raw({"type": "error", "code": "made-up", "message": "x"}))
    with pytest.raises(PeerError) as err:
        expect(reply, Ok)
    assert err.value.code == "remote-error" and err.value.message == "x"


def test_expect_refuses_the_wrong_reply() -> None:
    with pytest.raises(PeerError) as err:
        expect(Pong(), Ok)
    assert err.value.code == "bad-message"
    assert expect(Ok(), Ok) == Ok()


def test_delta_round_trip() -> None:
    old = {"a": summary("a"), "b": summary("b")}
    new = {"b": summary("b", "2"), "c": summary("c")}
    delta = library_delta(PID, 4, old, new)
    assert (delta.from_rev, delta.to_rev) == (4, 5)
    assert [g.game_id for g in delta.added] == ["c"]
    assert [g.game_id for g in delta.updated] == ["b"]
    assert delta.removed == ("a",)
    assert apply_delta(old, delta) == new
    assert library_delta(PID, 5, new, new).empty
    assert decode_request(encode(delta)) == delta


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
TYPE_NAMES = (
    *("hello", "hello-ack", "ping", "pong", "goodbye", "ok", "library-delta", "get-game"),
    *("game-files", "get-stream", "stream-manifest", "duplicate-identity", "error"),
    *("get-chunk", "chunk", "get-entries", "entry", "end", "x"),
)
type_names = st.sampled_from(TYPE_NAMES)


@settings(max_examples=300, deadline=None)
@given(
    value=json_values | st.dictionaries(st.text(max_size=12), json_values).map(dict),
    kind=type_names,
)
def test_arbitrary_json_is_decoded_or_refused(value: Any, kind: str) -> None:
    if isinstance(value, dict):
        value = {"type": kind, **value}
    data = json.dumps(value).encode()
    for decode in (decode_request, decode_reply, decode_lane_request, decode_lane_reply):
        try:
            message = decode(data)
        except PeerError as exc:
            assert exc.code and exc.message
        else:
            assert isinstance(message, msgspec.Struct)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_or_decoded(data: bytes) -> None:
    for decode in (decode_request, decode_reply, decode_lane_request, decode_lane_reply):
        try:
            decode(data)
        except PeerError as exc:
            assert exc.code in {"bad-message", "bad-path", "bad-game-id", "incompatible"}


def test_a_chunk_request_needs_its_type() -> None:
    request = {"token": "t", "game_id": "a", "path": "a", "offset": 0, "length": 1}
    assert refusal(decode_lane_request, raw(request)) == "bad-message"
    assert refusal(decode_lane_request, raw({"type": "chunk", "length": 1})) == "bad-message"
    decoded = decode_lane_request(raw({"type": "get-chunk", **request}))
    assert isinstance(decoded, ChunkRequest) and decoded.length == 1


# -- what a refusal tells the peer that sent the message ----------------------------------------


def manifest(*entries: tuple[str, bool], archives: int = 1) -> dict[str, Any]:
    empty = blake3(b"").hexdigest()
    listed = [{"path": p, "size": 0, "crc32": 0, "is_dir": d, "digest": empty} for p, d in entries]
    one = {"name": "a.eti", "solid": True, "entries": listed}
    return {"type": "stream-manifest", "game_id": "a", "archives": [one] * archives}


def refusal_message(decode: Any, data: bytes) -> str:
    with pytest.raises(PeerError) as err:
        decode(data)
    assert err.value.code == "bad-message"
    return err.value.message


DELTA = {"type": "library-delta", "peer_id": PID}
BAD_CHUNK_COUNT = files("a")
BAD_CHUNK_COUNT["files"][0].update(size=17, chunks=[H])


@pytest.mark.parametrize(
    ("decode", "message", "reason"),
    [
        (decode_reply, files("a", "a"), "duplicate path in file list"),
        (decode_reply, files("x/a", "x/a/b"), "path 'x/a' is both a file and a directory"),
        (
            decode_reply,
            BAD_CHUNK_COUNT,
            "chunk hash count does not match the file size - at `$.files[0]`",
        ),
        (decode_request, {**DELTA, "from_rev": 1, "to_rev": 1}, "to_rev must follow from_rev"),
        (
            decode_request,
            {**hello_fields(), "games": [summary("a").to_json()] * 2},
            "a game is listed twice",
        ),
        (
            decode_reply,
            manifest(("x", False), ("x", True)),
            "an entry is both a file and a directory",
        ),
        (decode_reply, manifest(("x", False), archives=2), "duplicate path in file list"),
    ],
    ids=["dup-file", "file-and-dir", "chunk-count", "same-rev", "dup-game", "dup-entry", "dup-arc"],
)
def test_refusals_say_what_is_wrong(decode: Any, message: dict[str, Any], reason: str) -> None:
    assert refusal_message(decode, raw(message)) == f"invalid message: {reason}"


def test_an_incompatible_peer_is_told_both_versions() -> None:
    with pytest.raises(PeerError) as err:
        decode_request(raw({**hello_fields(), "proto": 1}))
    assert err.value.message == f"peer speaks protocol 1, we speak {PROTOCOL_VERSION}"


def test_a_sha256_peer_is_refused_and_its_listing_never_read_as_blake3() -> None:
    """Protocol 5 moved chunk and entry digests from SHA-256 to BLAKE3 (same hex length). A
    protocol-4 peer's Hello is refused as incompatible, naming both versions; and were one of
    its listings to arrive anyway, its `sha256` field is refused, never taken as a digest."""
    assert PROTOCOL_VERSION == 5
    with pytest.raises(PeerError) as err:
        decode_request(raw({**hello_fields(), "proto": 4}))
    assert (err.value.code, err.value.message) == (
        "incompatible",
        "peer speaks protocol 4, we speak 5",
    )
    old = manifest(("a.bin", False))
    entry = old["archives"][0]["entries"][0]
    entry["sha256"] = entry.pop("digest")
    assert "unknown field `sha256`" in refusal_message(decode_reply, raw(old))


def test_digests_on_the_wire_are_lowercase_hex_of_blake3_length() -> None:
    for bad in ("A" * 64, "a" * 63, "a" * 65, "g" * 64):
        listed = manifest(("a.bin", False))
        listed["archives"][0]["entries"][0]["digest"] = bad
        assert refusal(decode_reply, raw(listed)) == "bad-message", bad
    assert len(EMPTY_DIGEST) == 64 and blake3(b"").hexdigest() == EMPTY_DIGEST


def test_a_lane_line_of_exactly_the_limit_is_decoded() -> None:
    line = encode(ChunkHeader(16))
    padded = line + b" " * (MAX_LANE_LINE - len(line))
    assert decode_lane_reply(padded) == ChunkHeader(16)
    assert refusal_message(decode_lane_reply, padded + b" ") == (
        f"message of {MAX_LANE_LINE + 1} bytes exceeds {MAX_LANE_LINE}"
    )


def test_expect_names_what_it_wanted_and_what_came() -> None:
    with pytest.raises(PeerError) as err:
        expect(Pong(), Ok)
    assert err.value.message == "expected Ok, got Pong"


def test_archives_may_hold_reserved_names_and_folders() -> None:
    """Archive members land under local/, so a member called local/... is just a folder."""
    reply = decode_reply(raw(manifest(("local", True), ("local/x.txt", False), ("empty", True))))
    assert isinstance(reply, StreamManifest)
    assert [e.path for e in reply.archives[0].entries] == ["local", "local/x.txt", "empty"]


def test_a_long_refusal_is_cut_to_what_a_peer_accepts() -> None:
    reply = ErrorReply.of(PeerError("not-servable", "x" * 5000))
    decoded = decode_reply(encode(reply))
    assert isinstance(decoded, ErrorReply) and decoded.message == "x" * 4096


def test_the_fuzzed_type_names_cover_every_message() -> None:
    """A message added to the protocol is fuzzed too: its tag must be in `type_names`."""
    tags = {
        cls.__struct_config__.tag
        for union in (Request, Reply, LaneRequest, LaneReply)
        for cls in get_args(union)
    }
    assert tags <= set(TYPE_NAMES), tags - set(TYPE_NAMES)


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/etc/passwd", "a/./b", "a\\b", "a\x00b", "", "caf\udce9"]
)
def test_hostile_archive_entry_names_are_refused(path: str) -> None:
    """The receiver of a stream writes each entry under staging by its name: an entry that
    climbs out must be refused when the listing is decoded (a mutant that let it through
    survived every test)."""
    entry = {"path": path, "size": 1, "crc32": 0, "is_dir": False}
    listing = {"name": "a.eti", "solid": False, "entries": [entry]}
    message = {"type": "stream-manifest", "game_id": "a", "archives": [listing]}
    data = json.dumps(message).encode("utf-8", "surrogatepass")
    assert refusal(decode_reply, data) in {"bad-message", "bad-path"}
