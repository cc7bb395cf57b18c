"""Streamed installs between whole nodes in one event loop, with real RAR archives and unrar.

The matrix rows S39-S47 prove the same on Docker; these run in seconds and reach the middle:
retry order, rollback on every failure, the provider process killed by a cancel.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

from nodes import CATALOG, Peer, Start, ready

from harness import crcforge

UNRAR = shutil.which("unrar") or "unrar"
GAME = "cnctw"


def make_archive(root: Path, name: str, files: dict[str, bytes], solid: bool = True) -> None:
    stage = root.parent / f".stage-{name}"
    for rel, data in files.items():
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    switches = ["-m3", "-s"] if solid else ["-m0"]
    subprocess.run(
        ["rar", "a", "-idq", "-cfg-", "-ma5", *switches, str(root / name), *files],
        cwd=stage,
        check=True,
    )
    shutil.rmtree(stage)


PAYLOAD = {
    "bin/cnctw-payload.bin": os.urandom(700_000),
    "data/cnctw-assets.dat": os.urandom(300_000),
    "readme.txt": b"streamed\n",
    "empty.txt": b"",
}


def serve_cnctw(peer: Peer, files: dict[str, bytes] = PAYLOAD) -> None:
    root = peer.games / GAME
    make_archive(root, "cnctw.eti", files)
    (root / "version.ini").write_text(CATALOG[GAME] + "\n")


def local_files(peer: Peer) -> dict[str, bytes]:
    local = peer.games / GAME / "local"
    return {str(p.relative_to(local)): p.read_bytes() for p in local.rglob("*") if p.is_file()}


def after_listing(tmp_path: Path, name: str, stage: str) -> str:
    """An `--unrar` whose first payload pass (the one the source's listing digests come from)
    is honest and whose later passes are piped through the shell `stage`: a source that lists
    its archive honestly, so the vote passes, and then streams something else."""
    marker, script = tmp_path / f"{name}.listed", tmp_path / name
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = p ] && [ -e "{marker}" ]; then\n'
        f'  "{UNRAR}" "$@" | {stage}\n'
        "  exit\n"
        "fi\n"
        f'[ "$1" = p ] && touch "{marker}"\n'
        f'exec "{UNRAR}" "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


def set_unrar(peer: Peer, unrar: str) -> None:
    peer.node.serving._listings.unrar = unrar


def assert_rolled_back(peer: Peer) -> None:
    assert not (peer.games / GAME).exists(), sorted(os.listdir(peer.games / GAME))


async def test_a_streamed_install_lands_in_local_only(start: Start) -> None:
    source, client = await start("source", unrar=UNRAR), await start("client")
    serve_cnctw(source)
    await ready(source)
    await ready(client)
    await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    await client.wait("install-finished", game_id=GAME)
    names = [n for n in client.names() if n.startswith(("download", "install"))]
    files = [p for p in PAYLOAD]
    assert names == [
        "download-begin",
        *["download-chunk-finished"] * len(files),
        "download-finished",
        "install-begin",
        "install-finished",
    ]
    chunks = [e["path"] for e in client.events if e["event"] == "download-chunk-finished"]
    assert sorted(chunks) == sorted(f".local.installing/{p}" for p in files)
    done = await client.wait("download-finished", game_id=GAME)
    assert done["bytes"] == sum(len(d) for d in PAYLOAD.values())
    assert local_files(client) == PAYLOAD
    assert sorted(os.listdir(client.games / GAME)) == ["local"], "no archive, no sentinel"
    game = {g["game_id"]: g for g in (await client.run("status"))["local_games"]}[GAME]
    assert (game["downloaded"], game["installed"], game["availability"]) == (
        False,
        True,
        "LocalOnly",
    )
    # S43: a second stream-install fails and leaves the install alone.
    mark = len(client.events)
    await client.run("stream-install", game_id=GAME)
    failed = await client.wait("download-failed", game_id=GAME, since=mark)
    assert failed["code"] == "already-installed"
    assert local_files(client) == PAYLOAD
    assert "install-finished" not in client.names()[mark:]


async def test_a_failed_source_is_rolled_back_and_the_next_one_streams(
    start: Start, tmp_path: Path
) -> None:
    broken, good = await start("broken"), await start("good")
    client = await start("client")
    for source in (broken, good):
        serve_cnctw(source)
        await ready(source)
    await ready(client)
    # The retry order is address order: the broken one goes first.
    broken, good = sorted([broken, good], key=lambda p: p.node.addr)
    set_unrar(broken, after_listing(tmp_path, "broken-unrar", "head -c 0"))
    set_unrar(good, UNRAR)
    for source in (broken, good):
        await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    await client.wait("install-finished", game_id=GAME)
    excluded = [e for e in client.events if e["event"] == "download-source-excluded"]
    assert [e["peer_addr"] for e in excluded] == [broken.node.addr]
    chunks = [e for e in client.events if e["event"] == "download-chunk-finished"]
    assert {c["peer_addr"] for c in chunks} == {good.node.addr}
    assert local_files(client) == PAYLOAD


FLIP_FIRST = (
    "python3 -c 'import sys; d=sys.stdin.buffer.read(); "
    "sys.stdout.buffer.write(bytes([d[0] ^ 1]) + d[1:])'"
)


async def test_bytes_that_miss_the_digest_exclude_the_source(start: Start, tmp_path: Path) -> None:
    liar_unrar = after_listing(tmp_path, "lying-unrar", FLIP_FIRST)
    liar, client = await start("liar", unrar=liar_unrar), await start("client")
    serve_cnctw(liar)
    await ready(liar)
    await ready(client)
    await client.run("connect", addr=liar.node.addr)
    await client.run("stream-install", game_id=GAME)
    failed = await client.wait("download-failed", game_id=GAME)
    assert failed["code"] == "sources-lost"
    excluded = await client.wait("download-source-excluded", game_id=GAME)
    assert excluded["code"] == "bad-chunk" and "validated BLAKE3" in excluded["reason"]
    assert "install-begin" not in client.names()
    assert_rolled_back(client)


async def test_bytes_that_keep_every_crc_are_caught_by_the_digest(
    start: Start, tmp_path: Path
) -> None:
    """Issue 17, class 1: a liar that lists honestly, sorts first and streams other bytes with
    the same sizes and CRC32s is excluded on the voted digest, and the stream is retried from
    an honest source: the installed files are the honest bytes."""
    liar, honest = await start("liar"), await start("honest")
    client = await start("client")
    for source in (liar, honest):
        serve_cnctw(source)
        await ready(source)
    await ready(client)
    liar, honest = sorted([liar, honest], key=lambda p: p.node.addr)  # the liar is tried first
    set_unrar(liar, after_listing(tmp_path, "forging-unrar", f"python3 {crcforge.__file__}"))
    set_unrar(honest, UNRAR)
    for source in (liar, honest):
        await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    await client.wait("install-finished", game_id=GAME)
    excluded = [e for e in client.events if e["event"] == "download-source-excluded"]
    assert [(e["peer_addr"], e["code"]) for e in excluded] == [(liar.node.addr, "bad-chunk")]
    assert "BLAKE3" in excluded[0]["reason"], excluded
    assert local_files(client) == PAYLOAD


async def test_a_corrupt_archive_is_not_offered(start: Start) -> None:
    source, client = await start("source", unrar=UNRAR), await start("client")
    serve_cnctw(source)
    (source.games / GAME / "cnctw.eti").write_bytes(b"not a rar archive at all" * 100)
    await ready(source)
    await ready(client)
    await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    failed = await client.wait("download-failed", game_id=GAME)
    skipped = await client.wait("download-source-skipped", game_id=GAME)
    assert skipped["code"] == "not-servable" and failed["code"] == "no-peers"
    assert (await client.run("status"))["active_operations"] == []
    assert_rolled_back(client)


def unrar_processes(archive: Path) -> list[int]:
    """Processes that hold `archive` open (the provider hands unrar its own descriptor)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
        except OSError:
            continue
        if str(archive) in targets:
            found.append(int(pid))
    return found


async def test_cancel_stops_the_stream_on_both_sides(start: Start) -> None:
    big = {"a.bin": os.urandom(3_000_000), "b.bin": os.urandom(3_000_000)}
    source = await start("source", unrar=UNRAR, max_upload_rate=1_000_000)
    client = await start("client")
    serve_cnctw(source, big)
    await ready(source)
    await ready(client)
    await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    await client.wait("download-chunk-finished", game_id=GAME, timeout=30)
    archive = source.games / GAME / "cnctw.eti"
    assert unrar_processes(archive), "the provider runs while the stream does"
    assert await client.run("cancel-download", game_id=GAME) == {
        "game_id": GAME,
        "cancelled": True,
    }
    assert_rolled_back(client)
    names = client.names()
    assert "download-cancelled" in names
    assert not {"download-failed", "download-finished", "install-finished"} & set(names)
    # The source's lane handler ends only after its provider was killed and reaped.
    lane = source.node._lane_server
    assert lane is not None
    async with asyncio.timeout(10):
        await asyncio.gather(*lane.handlers)
    assert not unrar_processes(archive), "the cancel left the source's unrar running"


async def test_one_payload_pass_per_archive_in_sorted_order(start: Start, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "logging-unrar"
    # The archive comes as the provider's own descriptor (/dev/fd/N): log the file it names.
    wrapper.write_text(
        f'#!/bin/sh\nfor a; do last=$a; done\necho "$1 $(readlink -f "$last")" >> "{log}"\n'
        f'exec "{UNRAR}" "$@"\n'
    )
    wrapper.chmod(0o755)
    source, client = await start("source", unrar=str(wrapper)), await start("client")
    root = source.games / GAME
    make_archive(root, "b-second.eti", {"order/second.txt": b"2\n", "z.txt": b"z"})
    make_archive(root, "a-first.eti", {"order/first.txt": b"1\n", "order/tail.txt": b"t"})
    (root / "version.ini").write_text(CATALOG[GAME] + "\n")
    await ready(source)
    await ready(client)
    await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    await client.wait("install-finished", game_id=GAME)
    chunks = [e["path"] for e in client.events if e["event"] == "download-chunk-finished"]
    order = ["order/first.txt", "order/tail.txt", "order/second.txt", "z.txt"]
    assert chunks == [f".local.installing/{p}" for p in order]
    passes = [line.split() for line in log.read_text().splitlines() if line.startswith("p ")]
    in_order = [str(root / "a-first.eti"), str(root / "b-second.eti")]
    assert [p[-1] for p in passes] == in_order * 2, "one pass for the digests, one streaming"


async def test_first_play_stamps_a_streamed_install(start: Start) -> None:
    files = {
        "game/SmartSteamEmu.ini": b"[SmartSteamEmu]\r\nPersonaName = stub\r\n",
        "profile/account_name.txt": b"stub",
        "profile/language.txt": b"stub",
    }
    source, client = await start("source", unrar=UNRAR), await start("client")
    serve_cnctw(source, files)
    await ready(source)
    await ready(client)
    await client.run("connect", addr=source.node.addr)
    await client.run("stream-install", game_id=GAME)
    await client.wait("install-finished", game_id=GAME)
    result = await client.run("play", game_id=GAME, username="ada", language="german")
    assert result["already_applied"] is False and result["persona_name_written"] is True
    stamped = local_files(client)
    assert stamped["profile/account_name.txt"] == b"ada"
    assert stamped["profile/language.txt"] == b"german"
    assert b"PersonaName = ada\r\n" in stamped["game/SmartSteamEmu.ini"]
