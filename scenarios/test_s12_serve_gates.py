"""S12 Transfer serving gates, asked of a live peer.

A probe (`python -m peer.probe`, run inside the client's world) asks the source directly for
file lists and raw chunks it must refuse: a non-catalog ID, a root without sentinel, a game with
an operation in progress, a path under `local/`, a version other than the catalog's, and paths
that leave the root. The unit tests in tests/test_serve_gates.py cover the same function
exhaustively; this proves the live peer routes every request through it.
"""

from typing import Any

import pytest

from harness.lab import Lab

OK_CHUNK = {"game_id": "bfbc2", "path": "bfbc2.eti", "offset": 0, "length": 16}


def get_game(game_id: str) -> dict[str, Any]:
    return {"type": "get-game", "game_id": game_id, "chunk_size": 32 * 1024 * 1024}


def refused(answer: dict[str, Any], key: str) -> tuple[str, str]:
    reply = answer[key]
    assert reply["type"] == "error", f"served what it must refuse: {answer}"
    return reply["code"], reply["message"]


@pytest.mark.scenario("S12")
def test_s12_transfer_serving_gates(lab: Lab) -> None:
    # The source serves bravo's games plus a non-catalog fixture root (its catalog lacks it).
    source = lab.peer("source", fixture="fixture-bravo", args=("--fixture", "mystery-game"))
    stale = lab.peer("stale", fixture="fixture-stale-b")  # cnc4 at a non-catalog version
    slow = lab.peer("slow", fixture="fixture-bravo", args=("--max-upload-rate", "131072"))
    client = lab.peer("client")

    # Control: the same probe gets a real answer for a servable game and chunk.
    ok = client.probe(source, get_game("bfbc2"), OK_CHUNK)
    assert ok["reply"]["type"] == "game-files" and ok["chunk"] == {"type": "chunk", "received": 16}

    code, message = refused(client.probe(source, get_game("mystery-game")), "reply")
    assert (code, "not in this peer's catalog" in message) == ("not-servable", True)

    source.run("rm", source.process.path("cnc4/version.ini"))
    for answer in (
        client.probe(source, get_game("cnc4")),
        client.probe(source, None, {**OK_CHUNK, "game_id": "cnc4", "path": "cnc4.eti"}),
    ):
        code, message = refused(answer, "reply" if "reply" in answer else "chunk")
        assert (code, "not downloaded" in message) == ("not-servable", True)

    code, message = refused(client.probe(stale, get_game("cnc4")), "reply")
    assert (code, "catalog wants" in message) == ("not-servable", True)

    source.send("install", game_id="bfbc2")
    source.expect("install-finished", where={"game_id": "bfbc2"})
    code, _ = refused(
        client.probe(source, None, {**OK_CHUNK, "path": "local/fixture-payload.txt"}), "chunk"
    )
    assert code == "bad-path"

    source.run("ln", "-s", "/etc/hostname", source.process.path("bfbc2/escape.txt"))
    for path in ("../cnctw/cnctw.eti", "/etc/hostname", "escape.txt", ".local.installing/x"):
        code, _ = refused(client.probe(source, None, {**OK_CHUNK, "path": path}), "chunk")
        assert code == "bad-path", path

    bad_token = client.probe(source, None, {**OK_CHUNK, "token": "forged"})
    assert refused(bad_token, "chunk")[0] == "unauthorised"

    # Active operation: the source re-downloads cnctw from a throttled peer; meanwhile it must
    # refuse to serve cnctw, then serve it again once the download committed.
    source.connect(slow)
    mark = source.mark()
    source.send("download", game_id="cnctw", install=False)
    source.expect("download-begin", where={"game_id": "cnctw"}, since=mark)
    for answer in (
        client.probe(source, get_game("cnctw")),
        client.probe(source, None, {**OK_CHUNK, "game_id": "cnctw", "path": "cnctw.eti"}),
    ):
        code, message = refused(answer, "reply" if "reply" in answer else "chunk")
        assert (code, "in progress" in message) == ("not-servable", True)
    assert source.events("download-finished", since=mark) == [], "the window was real"
    source.expect("download-finished", where={"game_id": "cnctw"}, since=mark, timeout=90)
    again = client.probe(source, get_game("cnctw"))
    assert again["reply"]["type"] == "game-files"
