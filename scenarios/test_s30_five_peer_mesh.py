"""S30 5+ peer mesh aggregation: one row per game, counts of catalog-version ready sources."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S30")
def test_s30_five_peer_mesh_aggregation(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")  # alienswarm bf1942 ggoo
    bravo = lab.peer("bravo", fixture="fixture-bravo")  # bfbc2 cnc4 cnctw ggoo
    charlie = lab.peer("charlie", fixture="fixture-charlie")  # bf1942 cnc4
    stale = lab.peer("stale", fixture="fixture-stale-a")  # cnc4, alienswarm: stale, hidden
    lowdisk = lab.peer("lowdisk", fixture="fixture-lowdisk")  # cod5
    client = lab.peer("client")
    client.connect(alpha, bravo, charlie, stale, lowdisk)

    rows = client.list_games()  # asserts one row per game ID
    expected = {
        "alienswarm": {alpha},
        "bf1942": {alpha, charlie},
        "bfbc2": {bravo},
        "cnc4": {bravo, charlie},
        "cnctw": {bravo},
        "cod5": {lowdisk},
        "ggoo": {alpha, bravo},
    }
    assert set(rows) == set(expected)
    catalog = {g["game_id"]: g["catalog_version"] for g in alpha.status()["local_games"]}
    for game_id, sources in expected.items():
        row = rows[game_id]
        assert row["peer_count"] == len(sources), row
        assert set(row["peers"]) == {p.peer_id for p in sources}, row
        assert stale.peer_id not in row["peers"] and client.peer_id not in row["peers"]
        if game_id in catalog:
            assert row["eti_game_version"] == catalog[game_id]
    assert len(client.list_peers()) == 5
