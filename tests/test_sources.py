"""What every transfer keeps the same books on (`transfer/sources.py`).

A reply that cannot be produced still gets an answer, and gathering offers goes on with the
sources that answered (issue 17 class 4; a regression: a source file whose name is not UTF-8
made the game-files reply unencodable, nothing was sent, and the download sat in Downloading
for the 600 s describe timeout even with a second, clean source). The figures a finished
transfer reports come last."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from nodes import CATALOG, Peer, Start, ready

from peer.paths import SENTINEL
from peer.transfer import sources
from peer.transfer.gather import gather_with_grace

pytestmark = pytest.mark.timeout(60)


def seed(peer: Peer, bad_name: bool = False) -> None:
    root = peer.games / "bfbc2"
    root.mkdir()
    (root / "bfbc2.eti").write_bytes(b"e" * 100_000)
    if bad_name:
        fd = os.open(bytes(root) + b"/caf\xe9.txt", os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    (root / SENTINEL).write_text(CATALOG["bfbc2"] + "\n")


async def test_a_source_with_a_name_the_protocol_cannot_carry_refuses_with_a_reason(
    start: Start,
) -> None:
    bad, good, c = await start("bad"), await start("good"), await start("c")
    seed(bad, bad_name=True)
    seed(good)
    for peer in (bad, good, c):
        await ready(peer)
    for source in (bad, good):
        await c.run("connect", addr=source.node.addr)
    began = time.monotonic()
    await c.run("download", game_id="bfbc2", install=False)
    skipped = await c.wait("download-source-skipped", peer_id=bad.node.peer_id, timeout=10)
    assert skipped["code"] == "not-servable", skipped
    assert "caf\\udce9.txt" in skipped["reason"] and "UTF-8" in skipped["reason"], skipped
    done = await c.wait("download-finished", game_id="bfbc2", timeout=10)
    assert list(done["bytes_per_source"]) == [good.node.addr]
    assert time.monotonic() - began < 10


async def test_a_source_that_never_offers_does_not_hold_the_download(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "OFFER_GRACE", 0.5)
    silent, good, c = await start("silent"), await start("good"), await start("c")
    seed(silent)
    seed(good)
    for peer in (silent, good, c):
        await ready(peer)

    async def never(request: Any) -> Any:
        await asyncio.Event().wait()

    silent.node.serving.answer = never
    for source in (silent, good):
        await c.run("connect", addr=source.node.addr)
    await c.run("download", game_id="bfbc2", install=False)
    skipped = await c.wait("download-source-skipped", peer_id=silent.node.peer_id, timeout=10)
    assert skipped["code"] == "peer-unreachable", skipped
    await c.wait("download-finished", game_id="bfbc2", timeout=10)


async def test_the_grace_is_at_least_as_long_as_the_first_answer_took() -> None:
    async def after(delay: float, value: str | None) -> str | None:
        await asyncio.sleep(delay)
        return value

    began = asyncio.get_running_loop().time()
    answers, late = await gather_with_grace(
        [after(0.3, "first"), after(0.5, "second"), after(30, "never"), after(0.0, None)], 0.1
    )
    assert answers == ["first", "second", None, None] and late == [2]
    assert 0.55 < asyncio.get_running_loop().time() - began < 2


async def test_without_any_answer_everyone_is_waited_for() -> None:
    async def after(delay: float) -> None:
        await asyncio.sleep(delay)

    answers, late = await gather_with_grace([after(0.0), after(0.3)], 0.01)
    assert answers == [None, None] and late == []


# -- the figures of download-finished ----------------------------------------------------------


def test_finished_figures_are_milliseconds_and_rates_to_three_decimals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("peer.transfer.sources.time.monotonic", lambda: 1000.0)
    result = sources.figures(3_000_001, 1000.0 - 0.1234567, 5, {"a:4000": 3_000_001})
    mib_per_s = 3_000_001 / sources.MIB / 0.1234567
    assert result == {
        "bytes": 3_000_001,
        "duration_ms": 123.457,
        "mib_per_s": round(mib_per_s, 3),
        "mbit_per_s": round(mib_per_s * 8.388608, 3),
        "chunks": 5,
        "bytes_per_source": {"a:4000": 3_000_001},
    }
    assert (result["mib_per_s"], result["mbit_per_s"]) == (23.174, 194.4)


def test_an_instant_transfer_reports_finite_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("peer.transfer.sources.time.monotonic", lambda: 50.0)
    result = sources.figures(sources.MIB, 50.0, 1, {})
    assert result["duration_ms"] == 0.001
    assert result["mib_per_s"] == 1_000_000.0
