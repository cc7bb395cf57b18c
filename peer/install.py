"""Install and uninstall as filesystem transactions.

Install extracts into `.local.installing/` and only a rename makes it `local/`, so a crash or an
unpack error never leaves a half-filled `local/` that looks installed. An update parks the old
`local/` in `.local.backup/` and puts it back if the promote fails. Uninstall renames `local/`
away first, so it is gone atomically, then deletes it; the downloaded root files stay.

A power cut keeps only what was synced: the staging tree is synced whole before the rename that
publishes it, and the root after every rename, so after a cut the game is the old state or the
new one and `recover` can tell which from the names alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

from peer.catalog import Catalog
from peer.errors import PeerError
from peer.files import clear_wrong_kind, fsync_dir, is_kind, remove_any, sync_tree
from peer.library import read_sentinel, root_archives
from peer.paths import (
    BACKUP_DIR,
    LOCAL_DIR,
    OWNED_MARKER,
    REMOVING_DIR,
    SENTINEL,
    STAGING_DIR,
    check_game_id,
)
from peer.unpack import Unpacker

remove_tree = remove_any  # whatever is there: a tree, a file, a link, a FIFO


def install_game(root: Path, unpacker: Unpacker) -> None:
    """(Re)create `local/` from the root's current archives."""
    if root.is_symlink() or read_sentinel(root) is None:  # the sentinel rule, links refused
        raise PeerError("not-downloaded", f"game {root.name} is not downloaded")
    staging, local, backup = root / STAGING_DIR, root / LOCAL_DIR, root / BACKUP_DIR
    remove_tree(staging)
    clear_wrong_kind(local, directory=True)  # a file or link named `local` is no install
    staging.mkdir()
    (staging / OWNED_MARKER).touch()
    try:
        unpacker.unpack(root_archives(root), staging)
        (staging / OWNED_MARKER).unlink()
        sync_tree(staging)  # every byte and name of the new install, before it is published
        if local.exists():
            remove_tree(backup)
            os.rename(local, backup)
            fsync_dir(root)
        try:
            os.rename(staging, local)
            fsync_dir(root)
        except OSError:
            if backup.exists() and not local.exists():
                os.rename(backup, local)
                fsync_dir(root)
            raise
        remove_tree(backup)
        fsync_dir(root)  # finished for good: nothing left for a later recovery to report
    except OSError as exc:
        remove_tree(staging)
        raise PeerError("install-failed", f"install of {root.name} failed: {exc}") from exc
    except BaseException:  # whatever the unpacker raised, no half-filled staging is left
        remove_tree(staging)
        raise


def uninstall_game(root: Path) -> None:
    """Remove `local/`, keeping the downloaded root files for a later reinstall (S6, S32)."""
    local, removing = root / LOCAL_DIR, root / REMOVING_DIR
    if not local.is_dir():
        raise PeerError("not-installed", f"game {root.name} is not installed")
    try:
        remove_tree(removing)
        os.rename(local, removing)
        # Uninstalled from here on, even across a power cut: a half-deleted tree under this
        # name is never restored (an update's backup would be).
        fsync_dir(root)
        remove_tree(removing)
        fsync_dir(root)
    except OSError as exc:
        raise PeerError("uninstall-failed", f"uninstall of {root.name} failed: {exc}") from exc


# Names a cancelled download leaves alone: the install and its staging belong to the user, and
# the rest belong to external tools (upstream's preserved set).
KEPT_ON_CANCEL = frozenset(
    {LOCAL_DIR, STAGING_DIR, BACKUP_DIR, ".lanspread.json", ".softlan_game_installed", ".sync"}
)


def discard_partial(root: Path) -> None:
    """Delete what a cancelled download wrote, keeping KEPT_ON_CANCEL; drop an emptied root."""
    if not root.is_dir() or root.is_symlink():
        return
    for entry in root.iterdir():
        if entry.name not in KEPT_ON_CANCEL:
            remove_tree(entry)
    if not any(root.iterdir()):
        root.rmdir()


Recovered = Literal["discarded-staging", "restored-backup", "removed-backup", "finished-uninstall"]


def recover(root: Path) -> list[Recovered]:
    """Finish or undo a transaction a crash interrupted, judged from the filesystem alone, and
    say what was done (nothing: []).

    Staging is always discarded (the archives are still there to retry): the install that was
    under way did not happen. A backup with no `local/` means the crash hit between the two
    renames of an update: restore it (the old state). A backup next to a `local/` is the
    leftover of a finished update: delete it (the new state). An uninstall's tree being removed
    is removed (it was uninstalled).
    """
    staging, local, backup = root / STAGING_DIR, root / LOCAL_DIR, root / BACKUP_DIR
    removing = root / REMOVING_DIR
    done: list[Recovered] = []
    if staging.exists() or staging.is_symlink():
        remove_tree(staging)
        done.append("discarded-staging")
    if removing.exists() or removing.is_symlink():
        remove_tree(removing)
        done.append("finished-uninstall")
    clear_wrong_kind(backup, directory=True)  # only a real directory is a parked install
    if is_kind(backup, directory=True):
        if is_kind(local, directory=True):
            remove_tree(backup)
            done.append("removed-backup")
        else:
            remove_tree(local)
            os.rename(backup, local)
            done.append("restored-backup")
    if done:
        fsync_dir(root)
    return done


def recovery_outcome(actions: list[Recovered]) -> str:
    """Which state a recovered game is in: `new` when the interrupted transaction had
    happened (its leftovers removed), `old` when it had not (staging dropped, backup restored)."""
    done = "removed-backup" in actions or "finished-uninstall" in actions
    return "new" if done and "restored-backup" not in actions else "old"


def prepare_games_dir(
    games_dir: Path, fixtures: tuple[str, ...], catalog: Catalog
) -> list[dict[str, Any]]:
    """At start: seed `--fixture` games, then finish or undo what a crash interrupted; the
    fields of one `install-recovered` event per game root that needed it."""
    for game_id in fixtures:
        _seed_fixture(games_dir / check_game_id(game_id), catalog)
    recovered = []
    for entry in sorted(games_dir.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and (done := recover(entry)):
            recovered.append(
                {"game_id": entry.name, "state": recovery_outcome(done), "actions": done}
            )
    return recovered


def _seed_fixture(root: Path, catalog: Catalog) -> None:
    """`--fixture ID`: a tiny archive and a sentinel at the catalog version (or today's)."""
    if (root / SENTINEL).exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{root.name}.eti").write_bytes(f"lanpeer fixture archive for {root.name}\n".encode())
    version = catalog.get(root.name, time.strftime("%Y%m%d"))
    (root / SENTINEL).write_text(version + "\n")
