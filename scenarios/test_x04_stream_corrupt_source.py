"""X04 (beyond upstream) A source that lists its archive honestly and streams other bytes.

The liar's `--unrar` is honest on its first payload pass, the one its listing's digests come
from, so its listing agrees with the honest source's and both are validated; every later pass
lies. Two liars:

- `crc-broken`: the last byte flipped. The first member streams intact, the last one misses
  its validated digest (and its CRC32, which the receiver leaves to the digest).
- `crc-kept` (issue 17): the first byte flipped and four bytes recomputed so that every size
  and CRC32 still matches (harness/crcforge.py), so a CRC check would pass the first member.

Either way the receiver excludes the liar (`bad-chunk`), discards what it staged, and streams
everything again from the honest source; the installed files are the honest bytes. As in S42
both sources start with `--unrar` pointing at nothing, and the roles are handed out by address
order afterwards, so the liar is certainly tried first.
"""

from pathlib import Path

import pytest

from harness import crcforge
from harness.lab import Lab

FLIP_LAST_BYTE = (
    "import sys; d = sys.stdin.buffer.read(); "
    "sys.stdout.buffer.write(d[:-1] + bytes([d[-1] ^ 1]) if d else d)"
)

# In the liar's world, with its marker set: its payload pass equals the real one in length, not
# in bytes, and (crc-kept) in CRC32.
LIES = """
import subprocess, sys, zlib
real, liar, archive, kind = sys.argv[1:]
honest, lie = (
    subprocess.run([u, "p", "-inul", "--", archive], capture_output=True, check=True).stdout
    for u in (real, liar)
)
same_crc = zlib.crc32(honest) == zlib.crc32(lie)
print(len(honest) == len(lie) and honest != lie and same_crc == (kind == "crc-kept"))
"""


def lying_unrar(real: str, lie: str, marker: str) -> str:
    """A shell script: `real` unrar, except that every payload pass (`p`) after the first one
    is piped through the shell stage `lie`."""
    return (
        "#!/bin/sh\n"
        f'if [ "$1" = p ] && [ -e "{marker}" ]; then\n'
        f'  "{real}" "$@" | {lie}\n'
        "  exit\n"
        "fi\n"
        f'[ "$1" = p ] && touch "{marker}"\n'
        f'exec "{real}" "$@"\n'
    )


@pytest.mark.scenario("X04")
@pytest.mark.parametrize("kind", ["crc-broken", "crc-kept"])
def test_x04_stream_source_whose_bytes_lie_is_excluded(lab: Lab, kind: str) -> None:
    liar, honest = lab.stream_sources()
    unrar_of = lab.unrar_of
    marker = unrar_of(liar.name) + ".listed"
    if kind == "crc-kept":
        forge = unrar_of(liar.name) + "-crcforge.py"
        liar.write_executable(forge, Path(crcforge.__file__).read_text())
        lie = f'python3 "{forge}"'
    else:
        lie = f'python3 -c "{FLIP_LAST_BYTE}"'
    liar.write_executable(unrar_of(liar.name), lying_unrar(lab.backend.unrar, lie, marker))
    rc, out = honest.run("ln", "-s", lab.backend.unrar, unrar_of(honest.name))
    assert rc == 0, out
    archive = liar.process.path("cnctw/cnctw.eti")
    assert liar.run("touch", marker)[0] == 0
    rc, out = liar.run("python3", "-c", LIES, lab.backend.unrar, unrar_of(liar.name), archive, kind)
    assert (rc, out.strip()) == (0, b"True"), f"the liar's payload pass lies as {kind}: {out!r}"
    assert liar.run("rm", marker)[0] == 0  # its next pass, the listing's, is honest
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
    assert "bytes do not match the validated BLAKE3" in excluded["reason"], excluded

    at = client.index(excluded)
    before = client.events("download-chunk-finished", since=start, until=at)
    after = client.events("download-chunk-finished", since=at, until=end)
    accepted = [] if kind == "crc-kept" else [".local.installing/bin/cnctw-payload.bin"]
    assert [(c["peer_addr"], c["path"]) for c in before] == [(liar.addr, p) for p in accepted], (
        "only the liar's intact members were accepted, never a lying one"
    )
    assert [(c["peer_addr"], c["path"]) for c in after] == [
        (honest.addr, f".local.installing/{p}") for p in expected.files
    ], "the honest source streamed the whole archive again"
    (finished,) = client.events("download-finished", since=start, until=end)
    assert finished["bytes"] == sum(size for size, _ in expected.files.values()), finished

    client.assert_stream_installed("cnctw", expected)
