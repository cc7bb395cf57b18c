"""S26 Same-game duplicate download: refused as operation-in-progress; the first completes."""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

RATE = ("--max-upload-rate", str(32 * 1024 * 1024))  # keeps the first download in flight


@pytest.mark.scenario("S26")
def test_s26_same_game_duplicate_download_rejection(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=RATE)
    client = lab.peer("client")
    client.connect(source)

    mark = client.mark()
    client.send("download", game_id="alienswarm", install=False)
    client.expect("download-begin", where={"game_id": "alienswarm"}, since=mark)
    error = client.send_error("download", game_id="alienswarm", install=False)
    assert error["code"] == "operation-in-progress"
    assert error["message"] == "operation already in progress for game alienswarm"
    assert client.events("download-finished", since=mark) == [], "the race was real"

    client.expect("download-finished", where={"game_id": "alienswarm"}, since=mark, timeout=240)
    client.no_event_since("download-failed", since=mark)
    assert len(client.events("download-begin", since=mark)) == 1, "no second writer started"
    assert_same(client.manifest("alienswarm"), source.manifest("alienswarm"), "alienswarm")
