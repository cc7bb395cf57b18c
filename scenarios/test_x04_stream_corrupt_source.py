"""X04 (beyond upstream) A source that lists its archive honestly and streams other bytes.

The liar's listing is honest, so it agrees with the honest source's and both are validated;
then its stream lies. A stream comes from one of two places, so there are two kinds of liar.

Where the archive must be extracted (`fixture-solid`'s cnctw), the liar's `--unrar` is honest on
its first payload pass, the one its listing's digests come from, and every later pass lies:

- `crc-broken`: the last byte flipped. The members before the last stream intact, the last one
  misses its validated digest (and its CRC32, which the receiver leaves to the digest).
- `crc-kept` (issue 17): the first byte flipped and four bytes recomputed so that every size
  and CRC32 still matches (harness/crcforge.py), so a CRC check would pass the first member.

Where the archive is stored (`fixture-bravo`'s cnctw), the source sends its members as they lie
in the archive, with no unrar to lie:

- `rewritten`: once the liar has listed, the last byte of its archive's last member is flipped
  in place, the file's inode, size and modification time kept, so its listing stays cached and
  the archive's headers are still the listed ones.

Either way the receiver excludes the liar (`bad-chunk`), discards what it staged, and streams
everything again from the honest source; the installed files are the honest bytes. As in S42
both sources start with `--unrar` pointing at nothing, and the roles are handed out by address
order afterwards, so the liar is certainly tried first.
"""

import io
from pathlib import Path

import pytest
import rarfile

from harness import crcforge
from harness.lab import Lab
from harness.peer import PeerHandle

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


# Flip one byte of a file in place, keeping its inode, size and modification time.
REWRITE = """
import os, sys
path, at = sys.argv[1], int(sys.argv[2])
st = os.stat(path)
with open(path, "r+b") as f:
    f.seek(at)
    byte = f.read(1)
    f.seek(at)
    f.write(bytes([byte[0] ^ 1]))
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
after = os.stat(path)
print((after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns))
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


def make_unrar_lie(lab: Lab, liar: PeerHandle, kind: str) -> None:
    """The liar's unrar lies as `kind` on every payload pass after its next one."""
    unrar_of = lab.unrar_of
    marker = unrar_of(liar.name) + ".listed"
    if kind == "crc-kept":
        forge = unrar_of(liar.name) + "-crcforge.py"
        liar.write_executable(forge, Path(crcforge.__file__).read_text())
        lie = f'python3 "{forge}"'
    else:
        lie = f'python3 -c "{FLIP_LAST_BYTE}"'
    liar.write_executable(unrar_of(liar.name), lying_unrar(lab.backend.unrar, lie, marker))
    archive = liar.process.path("cnctw/cnctw.eti")
    assert liar.run("touch", marker)[0] == 0
    rc, out = liar.run("python3", "-c", LIES, lab.backend.unrar, unrar_of(liar.name), archive, kind)
    assert (rc, out.strip()) == (0, b"True"), f"the liar's payload pass lies as {kind}: {out!r}"
    assert liar.run("rm", marker)[0] == 0  # its next pass, the listing's, is honest


def rewrite_after_listing(liar: PeerHandle, honest: PeerHandle) -> None:
    """The liar lists cnctw (a stranger's `GetStream`), then its archive's last byte of file
    data is flipped in place."""
    answer = honest.probe(liar, {"type": "get-stream", "game_id": "cnctw"})
    assert answer["reply"]["type"] == "stream-manifest", answer
    before = liar.read("cnctw/cnctw.eti")
    with rarfile.RarFile(io.BytesIO(before)) as rf:
        last = rf.infolist()[-1]
        assert last.compress_type == rarfile.RAR_M0, "cnctw is stored"
        at = last.data_offset + last.file_size - 1
    archive = liar.process.path("cnctw/cnctw.eti")
    rc, out = liar.run("python3", "-c", REWRITE, archive, str(at))
    assert (rc, out.strip()) == (0, b"True"), f"rewritten with its identity kept: {out!r}"
    after = liar.read("cnctw/cnctw.eti")
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [at]


@pytest.mark.scenario("X04")
@pytest.mark.parametrize("kind", ["crc-broken", "crc-kept", "rewritten"])
def test_x04_stream_source_whose_bytes_lie_is_excluded(lab: Lab, kind: str) -> None:
    liar, honest = lab.stream_sources("fixture-bravo" if kind == "rewritten" else "fixture-solid")
    for peer in (honest, liar) if kind == "rewritten" else (honest,):
        rc, out = peer.run("ln", "-s", lab.backend.unrar, lab.unrar_of(peer.name))
        assert rc == 0, out
    if kind == "rewritten":
        rewrite_after_listing(liar, honest)
    else:
        make_unrar_lie(lab, liar, kind)
    expected = honest.rar_members(lab.backend.unrar, "cnctw/cnctw.eti")
    members = list(expected.files)
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
    # A lie in the last byte spares the members before it; crc-kept lies in the first byte.
    accepted = [] if kind == "crc-kept" else [f".local.installing/{p}" for p in members[:-1]]
    assert [(c["peer_addr"], c["path"]) for c in before] == [(liar.addr, p) for p in accepted], (
        "only the liar's intact members were accepted, never a lying one"
    )
    assert [(c["peer_addr"], c["path"]) for c in after] == [
        (honest.addr, f".local.installing/{p}") for p in members
    ], "the honest source streamed the whole archive again"
    (finished,) = client.events("download-finished", since=start, until=end)
    assert finished["bytes"] == sum(size for size, _ in expected.files.values()), finished

    client.assert_stream_installed("cnctw", expected)
