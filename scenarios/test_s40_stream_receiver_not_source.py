"""S40 A streamed-install receiver is not a peer source.

A streamed install commits no root archive and no root `version.ini`, so the receiver has
nothing to serve: a third peer connected only to it may see its local-only summary, but no
downloadable `cnctw`, and both ways of fetching it are refused without creating files.
"""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S40")
def test_s40_streamed_install_receiver_is_not_a_source(lab: Lab) -> None:
    bravo = lab.peer("bravo", fixture="fixture-bravo", args=("--unrar", lab.backend.unrar))
    receiver = lab.peer("receiver")
    receiver.connect(bravo)
    w = receiver.stream_install("cnctw")
    assert w.outcome == "install-finished", w.terminal
    game = receiver.game("cnctw")
    assert game is not None and (game["downloaded"], game["availability"]) == (False, "LocalOnly")

    observer = lab.peer("observer")
    observer.connect(receiver)
    (entry,) = observer.list_peers()
    assert entry["peer_id"] == receiver.peer_id, "connected only to the receiver"
    summaries = [g for g in entry["games"] if g["game_id"] == "cnctw"]
    assert all((g["downloaded"], g["availability"]) == (False, "LocalOnly") for g in summaries), (
        summaries
    )

    row = observer.list_games().get("cnctw")
    assert row is None or (row["peer_count"], row["peers"]) == (0, []), row
    start = observer.mark()
    for cmd in ("download", "stream-install"):
        error = observer.send_error(cmd, game_id="cnctw")
        assert (error["code"], error["message"]) == ("no-peers", "no peers have game cnctw")
    assert len(observer.events("no-peers-have-game", since=start, where={"game_id": "cnctw"})) == 2
    for event in ("got-game-files", "download-begin", "download-chunk-finished"):
        observer.no_event_since(event, since=start)
    assert not observer.exists("cnctw"), "no local files were created"
    assert observer.status()["active_operations"] == []
