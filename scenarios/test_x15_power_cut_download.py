"""X15 (beyond upstream) Power cuts during a download: after each reboot nothing looks complete
that is not, the progress record never claims a chunk whose bytes were lost, and the retry ends
exact, fetching again only what was lost.

The client's games and state dirs are on powerfs (harness/powerfs): a cut loses every byte and
every name the peer had not fsynced, which a SIGKILL (X06) never does. Each cut is armed at a
chosen fsync or fsyncdir (powerfs kills the peer's world just before that sync reaches the
disk), so the cuts land exactly on the download's durability points:
  - a seeded phase of SEEDED attempts, each cut at a seeded sync anywhere before the commit in
    what is left of the download (the resume's own syncs, chunk data, progress-record updates);
  - a walk: the next attempts are cut at the 1st, 2nd, 3rd ... sync after the resume's own,
    until one runs through, so every sync of the end (the last chunks and the whole commit:
    files, sentinel, root) is cut once.
After each cut the client reboots on what is left and is checked before it retries. One source,
so the sync sequence does not depend on which source is faster.
"""

import json
import random

import pytest

from harness.lab import Lab
from harness.manifest import assert_same
from harness.peer import PeerHandle

GAME = "cnc4"
CHUNK = 256 * 1024
ARGS = ("--chunk-size", str(CHUNK))
SEED = 15
SEEDED = 14
MAX_ATTEMPTS = 60  # a bound on the loop, far above what the seed needs (about 25)
# A resume's own syncs before its first chunk: the game's three folders and its name in the
# games dir, then the progress record (file, folder). The commit walk starts after them.
RESUME_SYNCS = 6


def progress_claims(client: PeerHandle) -> int:
    """How many chunks the rebooted client's progress record vouches for (0: no record)."""
    if not client.exists(f"{GAME}/.lanpeer-progress"):
        return 0
    return len(json.loads(client.read(f"{GAME}/.lanpeer-progress"))["verified"])


@pytest.mark.scenario("X15")
def test_x15_power_cut_during_a_download(lab: Lab) -> None:
    rng = random.Random(SEED)
    source = lab.peer("source", fixture="fixture-power", args=ARGS)
    client = lab.peer("client", args=ARGS, power=True)
    expected = source.manifest(GAME)
    reported: set[tuple[str, int]] = set()  # reported verified: promised durable
    cuts: list[dict[str, object]] = []
    walk = 0  # the walk's next sync (0: still seeded)
    chunks = 11  # until the first download-begin says
    claims: int | None = None  # what the record vouched for after the last reboot

    for _attempt in range(MAX_ATTEMPTS):
        client.connect(source)
        left = chunks - len(reported)  # three syncs each (data, record, folder): all before
        armed = client.arm_power_cut(walk or rng.randint(1, RESUME_SYNCS + 3 * left))
        start = client.mark()
        client.send("download", game_id=GAME, install=False)
        end = client.power_cut_or(armed, ("download-finished", "download-failed"), start, 120)
        assert end.get("event") != "download-failed", end
        begins = client.events("download-begin", since=start)  # none if cut before it
        for begin in begins:
            if claims is not None:  # resuming re-hashes every claimed chunk: all must hold
                assert begin["resumed_chunks"] == claims, (begin, claims)
            assert begin["resumed_chunks"] >= len(reported), (begin, len(reported))
        fetched = [
            (e["path"], e["offset"]) for e in client.events("download-chunk-finished", since=start)
        ]
        assert not reported & set(fetched), "a chunk reported verified before a cut came again"
        assert len(fetched) == len(set(fetched)), "a chunk was fetched twice in one attempt"
        reported |= set(fetched)
        if end.get("event") == "download-finished":
            break
        cuts.append(end)
        chunks = begins[0]["chunks"] if begins else chunks
        if walk:
            walk += 1
        elif len(cuts) == SEEDED:
            walk = RESUME_SYNCS + 1

        client.restart()  # the reboot, on what the cut left
        complete = client.exists(f"{GAME}/version.ini")
        row = client.game(GAME)
        if complete:  # the commit's sentinel survived: then every byte did
            assert_same(expected, client.manifest(GAME), f"{GAME} after cut {end}")
            assert row is not None and row["downloaded"], row
            break
        assert row is None or not row["downloaded"], f"incomplete {GAME} listed as {row}"
        claims = progress_claims(client)
        assert claims >= len(reported), (
            f"the record claims {claims} chunks after cut {end}, {len(reported)} were reported"
        )
    else:
        pytest.fail(f"no attempt ran through in {MAX_ATTEMPTS}; cuts: {cuts}")

    client.no_event_since("download-failed", since=0)
    assert_same(expected, client.manifest(GAME), GAME)
    ops = {(c["op"], str(c["path"]).rsplit("/", 1)[-1]) for c in cuts}
    assert len(cuts) >= 20, f"only {len(cuts)} cuts: {cuts}"  # SEEDED, then the walk
    assert any(op == "fdatasync" for op, _ in ops), f"no cut at a chunk's data sync: {ops}"
    assert ("fsync", ".lanpeer-progress.tmp") in ops, f"no cut at a record update: {ops}"
    assert ("fsync", ".version.ini.tmp") in ops, f"no cut in the commit: {ops}"
