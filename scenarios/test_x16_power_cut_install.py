"""X16 (beyond upstream) Power cuts during install and uninstall: after each reboot the game is
the old state or the new one, never half, and the recovery at start says which.

The client downloads cnc4 onto powerfs, then each transaction is cut at every one of its syncs
in turn (the cut armed at the 1st, 2nd, 3rd ... sync, until one runs through):
  - a first install (staging synced, renamed to `local/`): old = no `local/`, new = `local/`
    exactly the archive's members;
  - an update over that install (the old `local/` parked, the new one renamed in, the old
    removed): old = `local/` with the player's save the lab put there, new = the members alone;
  - an uninstall (`local/` renamed away, then deleted), and once more right after it reported
    success: old = the install, new = no `local/` and nothing left of it.
After every cut nothing of the transaction may linger (no staging, no parked or half-deleted
tree), and an `install-recovered` event at start must name the state the game is in.
"""

import pytest

from harness.lab import Lab
from harness.manifest import Manifest
from harness.peer import PeerHandle
from harness.waiting import Record

GAME = "cnc4"
SAVE = "saves/slot-1.sav"  # the player's own file in the install: only the old state has it
MAX_SYNCS = 40  # a bound on each walk, far above a transaction's syncs (about 10)
LEFTOVERS = (".local.installing", ".local.backup", ".local.removing")


def write_durably(peer: PeerHandle, rel: str, data: bytes) -> None:
    """As a careful game would save: the file synced, then its folders."""
    path = peer.process.path(rel)
    script = (
        "import os, sys\n"
        "p = sys.argv[1]\n"
        "os.makedirs(os.path.dirname(p), exist_ok=True)\n"
        "fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)\n"
        "os.write(fd, bytes.fromhex(sys.argv[2])); os.fsync(fd); os.close(fd)\n"
        "for d in (os.path.dirname(p), os.path.dirname(os.path.dirname(p))):\n"
        "    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY); os.fsync(fd); os.close(fd)\n"
    )
    rc, out = peer.run("python3", "-c", script, path, data.hex())
    assert rc == 0, out


def state_of(peer: PeerHandle, old: Manifest | None, new: Manifest | None) -> str:
    """'old' or 'new', whichever the game's `local/` is exactly; fails on anything else."""
    for name in LEFTOVERS:
        assert not peer.exists(f"{GAME}/{name}"), f"{name} outlived the recovery"
    local = peer.manifest(f"{GAME}/local", skip=()) if peer.exists(f"{GAME}/local") else None
    matches = [name for name, want in (("old", old), ("new", new)) if local == want]
    assert matches, f"local/ is half: {local} (old {old}, new {new})"
    row = peer.game(GAME)
    assert row is not None and row["installed"] == (local is not None), row
    return matches[0]


def walk_cuts(
    peer: PeerHandle,
    command: str,
    finished: str,
    old: Manifest | None,
    new: Manifest | None,
    cuts: list[Record],
) -> None:
    """Run `command` with the cut armed at its 1st, 2nd ... sync until it runs through, or a
    cut after its commit point leaves it done."""
    for syncs in range(1, MAX_SYNCS):
        armed = peer.arm_power_cut(syncs)
        start = peer.mark()
        peer.send(command, game_id=GAME)
        end = peer.power_cut_or(armed, (finished, f"{command}-failed"), start, timeout=120)
        if end.get("event") == finished:
            peer.disarm_power_cut()
            assert state_of(peer, old, new) == "new"
            return
        assert end.get("event") == "powerfs-power-cut", end
        cuts.append(end)
        reboot = peer.mark()
        peer.restart()
        state = state_of(peer, old, new)
        for said in peer.events("install-recovered", since=reboot):
            assert said["game_id"] == GAME and said["state"] == state, (said, state, end)
        if state == "new":  # cut after its commit point: done, as the reboot shows
            return
    pytest.fail(f"{command} never ran through in {MAX_SYNCS} cuts")


@pytest.mark.scenario("X16")
def test_x16_power_cut_during_install_and_uninstall(lab: Lab) -> None:
    source = lab.peer("source", fixture="fixture-power")
    client = lab.peer("client", args=("--unrar", lab.backend.unrar), power=True)
    client.connect(source)
    assert client.download(GAME, install=False).outcome == "download-finished"
    members = source.rar_members(lab.backend.unrar, f"{GAME}/cnc4.eti")
    cuts: list[Record] = []

    walk_cuts(client, "install", "install-finished", None, members, cuts)

    write_durably(client, f"{GAME}/local/{SAVE}", b"level 7, 3 lives")
    played = client.manifest(f"{GAME}/local", skip=())
    assert SAVE in played.files
    walk_cuts(client, "install", "install-finished", played, members, cuts)

    walk_cuts(client, "uninstall", "uninstall-finished", members, None, cuts)
    said = {tuple(r["actions"]) for r in client.events("install-recovered")}
    assert ("finished-uninstall",) in said, f"no cut between an uninstall's two syncs: {said}"

    mark = client.mark()  # installed again, uninstalled, and the power cut right after
    client.send("install", game_id=GAME)
    client.expect("install-finished", where={"game_id": GAME}, since=mark)
    client.send("uninstall", game_id=GAME)
    client.expect("uninstall-finished", where={"game_id": GAME}, since=mark)
    client.power_cut()
    reboot = client.mark()
    client.restart()
    assert state_of(client, members, None) == "new"
    client.no_event_since("install-recovered", since=reboot)  # a finished one left nothing

    where = [(str(c["op"]), str(c["path"])) for c in cuts]
    assert any(".local.installing/" in path for _, path in where), f"no cut in staging: {where}"
    assert (("fsyncdir", f"/games/{GAME}")) in where, f"no cut at a rename's sync: {where}"
