"""X03 (beyond upstream's matrix) Cancel a download mid-transfer.

The user's cancel is not a failure: `download-cancelled`, never `download-failed`; the partial
root is removed, the operation clears, the source is unaffected, and a later download works.
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

RATE = ("--max-upload-rate", str(16 * 1024 * 1024))  # the transfer is surely still running


@pytest.mark.scenario("X03")
def test_x03_cancel_download_mid_transfer(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=RATE)
    client = lab.peer("client")
    client.connect(source)
    assert client.send_error("cancel-download", game_id="alienswarm")["code"] == "not-downloading"

    start = client.mark()
    client.send("download", game_id="alienswarm", install=False)
    client.expect("download-begin", where={"game_id": "alienswarm"}, since=start)
    assert client.exists("alienswarm/alienswarm.eti"), "the transfer had written files"
    result = client.send("cancel-download", game_id="alienswarm")
    assert result == {"game_id": "alienswarm", "cancelled": True}
    client.expect("download-cancelled", where={"game_id": "alienswarm"}, since=start)

    assert client.status()["active_operations"] == []
    assert not client.exists("alienswarm"), "partial files are removed, the empty root too"
    assert client.game("alienswarm") is None
    assert source.status()["active_operations"] == []

    retry = client.download("alienswarm", timeout=240)
    assert retry.outcome == "download-finished", retry.terminal
    # Over everything the cancelled download could still have said, up to the retry's end:
    client.no_event_since("download-failed", since=start, until=retry.end)
    assert len(client.events("download-finished", since=start)) == 1
    assert_same(client.manifest("alienswarm"), source.manifest("alienswarm"), "after a cancel")
