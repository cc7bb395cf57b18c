"""S46 The receiver cancels a streamed install: rolled back, not failed, and the sender stops.

As in S45 the source is throttled to 8 MiB/s, so after the first 40 MiB member two are still
streaming. `cancel-download` answers once the rollback is done; the user's cancel ends with
`download-cancelled`, never `download-failed`, and the source's `unrar p` goes away with it.
"""

import pytest

from harness.lab import Lab
from harness.peer import PeerHandle

RATE = ("--max-upload-rate", str(8 * 1024 * 1024))
ENDINGS = ("download-cancelled", "download-failed", "install-finished", "install-failed")


# Processes holding `archive` open: the provider hands unrar its own descriptor (/dev/fd/N,
# never a path that could be a link), so the archive is in /proc/PID/fd, not the command line.
HOLDERS = """
import os, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        if sys.argv[1] in {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}:
            print(open(f"/proc/{pid}/cmdline").read().replace(chr(0), " ").strip())
    except OSError:
        pass
"""


def unrar_processes(source: PeerHandle, archive: str) -> str:
    """Command lines in the source's world of processes reading `archive` (its unrar p; the
    peer itself, a python3, holds it too while it streams, and so does this look-up)."""
    rc, out = source.run("python3", "-c", HOLDERS, archive)
    assert rc == 0, out
    lines = out.decode(errors="replace").strip().splitlines()
    return "\n".join(line for line in lines if "python3" not in line.split(" ", 1)[0])


@pytest.mark.scenario("S46")
def test_s46_receiver_cancels_streamed_install(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-alpha", args=("--unrar", lab.backend.unrar, *RATE))
    client = lab.peer("client")
    client.connect(source)
    archive = source.process.path("alienswarm/alienswarm.eti")
    assert unrar_processes(source, archive) == "", "no unrar runs before the stream"

    start = client.mark()
    client.send("stream-install", game_id="alienswarm")
    client.expect("download-chunk-finished", where={"game_id": "alienswarm"}, since=start)
    streaming = unrar_processes(source, archive)
    assert " p " in f" {streaming} ", f"the source streams through unrar p: {streaming!r}"

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

    # The source logs when its provider has been killed and reaped; then no unrar may be left.
    stopped = source.expect_log(
        "provider stopped", archive="alienswarm.eti", purpose="stream", timeout=30
    )
    assert stopped["exit_code"] != 0, stopped
    assert unrar_processes(source, archive) == "", "the cancel left the source's unrar running"
    assert source.status()["active_operations"] == []
    # Nothing the cancelled stream could still say may be a failure or a success.
    client.no_event_since("download-failed", since=start)
    client.no_event_since("install-finished", since=start)
