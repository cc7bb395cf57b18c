"""S47 A game with two root archives streams them in sorted archive-name order.

`fixture-multi` declares `b-second.eti` before `a-first.eti`, and `a-first.eti` holds a member
(`order/tail-of-first.txt`) that sorts after `b-second.eti`'s `order/second.txt`: only archive
order, member order inside each archive, gives the expected sequence. The source's unrar is
wrapped to log its calls: its listing takes one payload pass per archive, once, to give each
entry its digest; the stream then takes none, because both archives are stored and are sent as
they lie in the archive (a compressed archive's stream is one pass per archive, never one per
member: tests/test_provider.py).
"""

import pytest

from harness.lab import Lab
from harness.manifest import assert_same

ARCHIVES = ("cnctw/a-first.eti", "cnctw/b-second.eti")
ORDER = ["order/first.txt", "order/tail-of-first.txt", "order/second.txt"]


def logging_unrar(real: str, log: str) -> str:
    """A shell script: `real` unrar, with each call's command and archive appended to `log`.
    The source hands unrar an archive it opened itself (`/dev/fd/N`, never a path a link could
    redirect), so the wrapper names the file behind that descriptor."""
    return (
        "#!/bin/sh\n"
        'last=""; for a in "$@"; do last=$a; done\n'
        'case "$last" in /dev/fd/*) last=$(readlink "/proc/$$/fd/${last#/dev/fd/}");; esac\n'
        f'echo "$1 $last" >> "{log}"\n'
        f'exec "{real}" "$@"\n'
    )


@pytest.mark.scenario("S47")
def test_s47_multi_archive_streamed_install_order(lab: Lab) -> None:
    wrapper, calls = lab.backend.scratch("logging-unrar"), lab.backend.scratch("unrar-calls.log")
    source = lab.peer("multi", fixture="fixture-multi", args=("--unrar", wrapper))
    source.write_executable(wrapper, logging_unrar(lab.backend.unrar, calls))
    client = lab.peer("client")
    client.connect(source)
    assert sorted(source.files("cnctw")) == ["a-first.eti", "b-second.eti", "version.ini"]
    expected = source.rar_members(lab.backend.unrar, *ARCHIVES)
    assert list(expected.files) == ORDER

    w = client.stream_install("cnctw")
    assert w.outcome == "install-finished", w.terminal
    for bad in ("download-failed", "install-failed", "download-source-excluded"):
        client.no_event_since(bad, since=w.start, until=w.end)
    chunks = client.events("download-chunk-finished", since=w.start, until=w.end)
    assert [c["path"] for c in chunks] == [f".local.installing/{p}" for p in ORDER]
    assert client.read("cnctw/local/order/first.txt") == b"first archive: a-first.eti\n"
    assert client.read("cnctw/local/order/second.txt") == b"second archive: b-second.eti\n"
    assert_same(client.manifest("cnctw/local", skip=()), expected, "local/ vs unrar p")

    client.assert_stream_installed("cnctw", expected)

    rc, log = source.run("cat", calls)
    assert rc == 0, log
    passes = [line.split() for line in log.decode().splitlines() if line.startswith("p ")]
    paths = [source.process.path(a) for a in ARCHIVES]
    assert [p[-1] for p in passes] == paths, (
        "one payload pass per archive for the listing, in sorted order, and none for the stream"
    )
    for archive in ("a-first.eti", "b-second.eti"):
        source.expect_log("archive sent as stored", archive=archive, complete=True)
