"""A root that changes while a source reads it (a person deleting the game, the nemesis run's
workload) is refused as not servable, not logged as a crashed handler."""

from __future__ import annotations

from pathlib import Path

import pytest

from peer.errors import PeerError
from peer.protocol import GetGame
from peer.transfer.serve import DescriptorCache, Serving


async def test_a_file_gone_while_described_is_a_clean_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "bf1942"
    root.mkdir()
    (root / "bf1942.eti").write_bytes(b"x" * 10)
    (root / "version.ini").write_text("20250101\n")
    serving = Serving(lambda: tmp_path, {"bf1942": "20250101"}, frozenset, "t" * 32, None, None)

    def vanished(self: DescriptorCache, root: Path, chunk_size: int) -> object:
        raise FileNotFoundError(2, "No such file or directory", str(root / "notes.txt"))

    monkeypatch.setattr(DescriptorCache, "describe", vanished)
    with pytest.raises(PeerError) as err:
        await serving.answer(GetGame("bf1942", 1024 * 1024))
    assert err.value.code == "not-servable"
    assert "changed while read" in err.value.message
