"""S3 Remote aggregation: an empty client lists each remote game once with its peer count."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S3")
def test_s03_remote_aggregation(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    bravo = lab.peer("bravo", fixture="fixture-bravo")
    client = lab.peer("client")

    client.connect(alpha, bravo)

    rows = client.list_games()  # asserts one row per game ID
    assert {gid: r["peer_count"] for gid, r in rows.items()} == {
        "alienswarm": 1,
        "bf1942": 1,
        "bfbc2": 1,
        "cnc4": 1,
        "cnctw": 1,
        "ggoo": 2,
    }
    assert set(rows["ggoo"]["peers"]) == {alpha.peer_id, bravo.peer_id}
    for row in rows.values():
        assert (row["downloaded"], row["installed"], row["availability"]) == (False, False, None)
        assert client.peer_id not in row["peers"]
