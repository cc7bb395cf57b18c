"""X04 (beyond upstream) A source whose streamed bytes do not match its archive's CRC32s.

The liar lists its archive honestly (so it is validated like the honest source), but its
`unrar p` output has the last byte flipped: the first member streams intact, the last one
arrives corrupted. The receiver checks each member against the validated CRC32, excludes the
liar (`bad-chunk`), discards what it staged, and streams everything again from the honest
source. As in S42 both sources start with `--unrar` pointing at nothing, and the roles are
handed out by address order afterwards, so the liar is certainly tried first.
"""

import pytest

from harness.lab import Lab

FLIP_LAST_BYTE = (
    "import sys; d = sys.stdin.buffer.read(); "
    "sys.stdout.buffer.write(d[:-1] + bytes([d[-1] ^ 1]) if d else d)"
)

# In the liar's world: its whole-archive payload pass equals the real one but for the last byte.
LIES_LAST = """
import subprocess, sys
real, liar, archive = sys.argv[1:]
honest, lie = (
    subprocess.run([u, "p", "-inul", "--", archive], capture_output=True, check=True).stdout
    for u in (real, liar)
)
print(len(honest) == len(lie) and honest[:-1] == lie[:-1] and honest[-1] != lie[-1])
"""


def lying_unrar(real: str) -> str:
    """A shell script: `real` unrar, except that the payload pass (`p`) lies in its last byte."""
    return (
        "#!/bin/sh\n"
        'if [ "$1" = p ]; then\n'
        f'  "{real}" "$@" | python3 -c "{FLIP_LAST_BYTE}"\n'
        "else\n"
        f'  exec "{real}" "$@"\n'
        "fi\n"
    )


@pytest.mark.scenario("X04")
def test_x04_stream_source_with_bad_crc_is_excluded(lab: Lab) -> None:
    liar, honest = lab.stream_sources()
    unrar_of = lab.unrar_of
    script = lying_unrar(lab.backend.unrar)
    liar.write_executable(unrar_of(liar.name), script)
    rc, out = honest.run("ln", "-s", lab.backend.unrar, unrar_of(honest.name))
    assert rc == 0, out
    archive = liar.process.path("cnctw/cnctw.eti")
    rc, out = liar.run("python3", "-c", LIES_LAST, lab.backend.unrar, unrar_of(liar.name), archive)
    assert (rc, out.strip()) == (0, b"True"), f"the liar's payload pass is off by one byte: {out!r}"
    expected = honest.rar_members(lab.backend.unrar, "cnctw/cnctw.eti")
    assert list(expected.files)[-1] == "data/cnctw-assets.dat"
    client = lab.peer("client")
    client.connect(liar, honest)

    w = client.stream_install("cnctw")
    assert w.outcome == "install-finished", w.terminal
    start, end = w.start, w.end
    client.no_event_since("download-failed", since=start, until=end)
    client.no_event_since("install-failed", since=start, until=end)
    (files,) = client.events("got-game-files", since=start, until=end)
    assert [s["peer_addr"] for s in files["sources"]] == [liar.addr, honest.addr], "both valid"
    (excluded,) = client.events("download-source-excluded", since=start, until=end)
    assert (excluded["peer_addr"], excluded["code"]) == (liar.addr, "bad-chunk"), excluded

    at = client.index(excluded)
    before = client.events("download-chunk-finished", since=start, until=at)
    after = client.events("download-chunk-finished", since=at, until=end)
    assert [(c["peer_addr"], c["path"]) for c in before] == [
        (liar.addr, ".local.installing/bin/cnctw-payload.bin")
    ], "the liar's intact first member was accepted, its corrupt last one never was"
    assert [(c["peer_addr"], c["path"]) for c in after] == [
        (honest.addr, f".local.installing/{p}") for p in expected.files
    ], "the honest source streamed the whole archive again"
    (finished,) = client.events("download-finished", since=start, until=end)
    assert finished["bytes"] == sum(size for size, _ in expected.files.values()), finished

    client.assert_stream_installed("cnctw", expected)
