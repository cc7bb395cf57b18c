"""S46 The receiver cancels a streamed install: rolled back, not failed, and the sender stops.

As in S45 the source is throttled to 8 MiB/s, so after the first 40 MiB member two are still
streaming. `cancel-download` answers once the rollback is done; the user's cancel ends with
`download-cancelled`, never `download-failed`, and the source stops sending: alienswarm's archive
is stored, so the source sends it as it lies (no `unrar` runs), and once the cancel reaches it
the source lets go of the archive. (A compressed archive's `unrar p` is killed with its whole
process group: tests/test_provider.py.)
"""

from pathlib import Path

import pytest

from harness.lab import Lab
from harness.peer import PeerHandle

RATE = ("--max-upload-rate", str(8 * 1024 * 1024))
ENDINGS = ("download-cancelled", "download-failed", "install-finished", "install-failed")


# Processes holding `archive` open, but this look-up: a stream's sender opens the archive
# itself, and would hand unrar that descriptor (/dev/fd/N), so holders are found in /proc/PID/fd.
HOLDERS = """
import os, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        if sys.argv[1] in {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}:
            print(open(f"/proc/{pid}/cmdline").read().replace(chr(0), " ").strip())
    except OSError:
        pass
"""


def holders(source: PeerHandle, archive: str) -> list[str]:
    """Command lines in the source's world of processes holding `archive` open."""
    rc, out = source.run("python3", "-c", HOLDERS, archive)
    assert rc == 0, out
    return out.decode(errors="replace").strip().splitlines()


@pytest.mark.scenario("S46")
def test_s46_receiver_cancels_streamed_install(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=("--unrar", lab.backend.unrar, *RATE))
    client = lab.peer("client")
    client.connect(source)
    archive = source.process.path("alienswarm/alienswarm.eti")
    assert holders(source, archive) == [], "nothing holds the archive before the stream"

    start = client.mark()
    client.send("stream-install", game_id="alienswarm")
    client.expect("download-chunk-finished", where={"game_id": "alienswarm"}, since=start)
    streaming = holders(source, archive)
    programs = [Path(line.split(" ", 1)[0]).name for line in streaming]
    assert len(programs) == 1 and "unrar" not in programs, (
        f"the peer alone holds the archive, sending it as it lies: {streaming}"
    )

    result = client.send("cancel-download", game_id="alienswarm")
    assert result == {"game_id": "alienswarm", "cancelled": True}
    for gone in ("local", ".local.installing", "alienswarm.eti", "version.ini"):
        assert not client.exists(f"alienswarm/{gone}"), f"{gone} outlived the cancel's answer"
    assert not client.exists("alienswarm"), "the root, empty before, is removed too"
    ended = client.expect_one_of(ENDINGS, where={"game_id": "alienswarm"}, since=start)
    assert ended["event"] == "download-cancelled", ended
    end = client.index(ended) + 1
    for event in ("download-failed", "download-finished", "install-begin", "install-finished"):
        client.no_event_since(event, since=start, until=end)
    assert len(client.events("download-chunk-finished", since=start, until=end)) < 3
    assert client.status()["active_operations"] == []
    assert client.game("alienswarm") is None

    # The source logs when its send has stopped; then nothing may hold the archive.
    source.expect_log(
        "archive sent as stored", archive="alienswarm.eti", complete=False, timeout=30
    )
    assert holders(source, archive) == [], "the cancel left the source holding the archive"
    assert source.status()["active_operations"] == []
    # Nothing the cancelled stream could still say may be a failure or a success.
    client.no_event_since("download-failed", since=start)
    client.no_event_since("install-finished", since=start)
