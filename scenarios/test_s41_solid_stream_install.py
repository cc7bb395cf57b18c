"""S41 Streamed install of a solid archive.

In a solid RAR every member is compressed against the ones before it, so a stream cannot seek
to a member: the source must print them in archive order in one pass. The fixture is checked to
be solid in the source's own world before anything is streamed.
"""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S41")
def test_s41_solid_archive_streamed_install(lab: Lab) -> None:
    unrar = lab.backend.unrar
    source = lab.peer("solid", fixture="fixture-solid", args=("--unrar", unrar))
    client = lab.peer("client")
    client.connect(source)
    rc, listing = source.run(unrar, "lt", "-cfg-", source.process.path("cnctw/cnctw.eti"))
    assert rc == 0 and b"Details: RAR 5, solid" in listing, listing[-600:]
    expected = source.rar_members(unrar, "cnctw/cnctw.eti")
    assert len(expected) == 4
    extracted = sum(size for size, _ in expected.files.values())

    w = client.stream_install("cnctw")
    assert w.outcome == "install-finished", w.terminal
    for bad in ("download-failed", "install-failed", "download-source-excluded"):
        client.no_event_since(bad, since=w.start, until=w.end)
    (begin,) = client.events("download-begin", since=w.start, until=w.end)
    (finished,) = client.events("download-finished", since=w.start, until=w.end)
    chunks = client.events("download-chunk-finished", since=w.start, until=w.end)
    assert begin["total_bytes"] == finished["bytes"] == extracted, (begin, finished)
    assert sum(c["bytes"] for c in chunks) == extracted
    assert [c["path"] for c in chunks] == [f".local.installing/{p}" for p in expected.files]

    client.assert_stream_installed("cnctw", expected)
