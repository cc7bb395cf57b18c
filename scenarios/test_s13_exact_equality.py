"""S13 Exact transferred-file equality, for a small and a large (multi-chunk) game."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.runlog import Figure


@pytest.mark.scenario("S13")
def test_s13_exact_transferred_file_equality(lab: Lab, figure: Figure) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")
    client.connect(alpha, bravo)

    for game_id, source in (("bfbc2", bravo), ("alienswarm", alpha)):
        w = client.download(game_id, install=False)
        assert w.outcome == "download-finished", w.terminal
        expected = source.manifest(game_id)
        got = client.manifest(game_id)
        assert_same(got, expected, f"{game_id} client vs {source.name}")
        # No extra or missing files anywhere in the root, bookkeeping included.
        assert client.files(game_id) == sorted(expected.files)
        figure(f"{game_id}_mib_per_s", w.terminal["mib_per_s"])
    assert w.terminal["chunks"] >= 4, "the large game spans several chunks"
