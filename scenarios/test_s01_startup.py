"""S1 Startup scan: a peer started on fixture-alpha reports ready and its catalog games."""

import pytest

from harness.lab import Lab

ALPHA_GAMES = {"alienswarm", "bf1942", "ggoo"}


@pytest.mark.scenario("S1")
def test_s01_startup_scan(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")

    assert alpha.records[0]["event"] == "cli-started"
    library = alpha.expect("local-library-changed")
    ready = alpha.expect("local-peer-ready")
    assert alpha.index(library) < alpha.index(ready), "library is scanned before ready"
    assert ready["addr"].rpartition(":")[2] != "0", "ready address carries the bound port"

    scanned = {g["game_id"]: g for g in library["games"]}
    assert set(scanned) == ALPHA_GAMES
    for game_id in ALPHA_GAMES:
        game = alpha.game(game_id)
        assert game is not None
        assert (game["downloaded"], game["installed"], game["availability"]) == (
            True,
            False,
            "Ready",
        ), game
        assert scanned[game_id] == game
        assert game["version"] == game["catalog_version"], "fixtures carry catalog versions"
