"""A seeded mixed workload for the nemesis run: what users do while the LAN misbehaves.

Each client runs one operation at a time in a thread of its own, chosen by a seeded random:
downloads (with and without install), streamed installs, downloads cancelled once begun, and
uninstalls; the sources have games dropped in and removed. Every operation is an `Op` with the
window of its client's records, so the checker (harness/checker.py) can judge each one after
the run. A download that finished is compared with the source's manifest at once, before a
later operation changes the game.
"""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field

from harness.manifest import Manifest
from harness.peer import PeerCommandError, PeerHandle

DOWNLOADABLE = ("bf1942", "ggoo", "alienswarm")  # fixture-alpha's, on every alpha source
STREAMED = "cnctw"  # fixture-bravo's, from the streaming source
DROPPED = "css"  # dropped into and removed from sources
OP_TIMEOUT = 240.0
DOWNLOAD_ENDS = ("download-finished", "download-failed", "download-cancelled")
INSTALL_ENDS = ("install-finished", "install-failed", "download-failed", "download-cancelled")
UNINSTALL_ENDS = ("uninstall-finished", "uninstall-failed")


@dataclass
class Op:
    """One user operation on one client: its kind, game, records window and outcome."""

    client: str
    kind: str  # download, download+install, stream, cancel, uninstall, drop, remove
    game_id: str
    start: int
    ends: tuple[str, ...] = ()  # the terminal events this kind can end with
    end: int | None = None
    outcome: str = ""  # the terminal event, or "refused: CODE", or "" when it never ended


@dataclass
class Workload:
    seed: int
    clients: list[PeerHandle]
    sources: list[PeerHandle]  # every one serves DOWNLOADABLE
    streamer: PeerHandle  # serves STREAMED with --unrar
    expected: dict[str, Manifest]  # game -> the sources' manifest
    catalog: dict[str, str]
    ops: list[Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        """Start one thread per client and one for the sources' file changes."""
        threads = [
            threading.Thread(target=self._client, args=(c, i, stop), name=f"workload-{c.name}")
            for i, c in enumerate(self.clients)
        ]
        threads.append(threading.Thread(target=self._dropper, args=(stop,), name="dropper"))
        for thread in threads:
            thread.start()
        return threads

    def _note(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    def _client(self, client: PeerHandle, index: int, stop: threading.Event) -> None:
        rng = random.Random(f"{self.seed}-{index}")
        while not stop.is_set():
            kind = rng.choice(("download", "download+install", "stream", "cancel", "uninstall"))
            game = STREAMED if kind == "stream" else rng.choice(DOWNLOADABLE)
            try:
                self._one(client, kind, game)
            except AssertionError as exc:  # an op that never ended: the checker's business
                self._problem(f"{client.name} {kind} {game}: {str(exc).splitlines()[0]}")
                return

    def _one(self, client: PeerHandle, kind: str, game: str) -> None:
        local = client.game(game)
        if kind == "uninstall":
            if not (local and local["installed"]):
                return
            self._start(client, "uninstall", game, UNINSTALL_ENDS, "uninstall", {})
            return
        if local is not None:  # start from nothing: a person deletes the game first
            client.forget(game)
        if kind == "stream":
            self._start(client, kind, game, INSTALL_ENDS, "stream-install", {})
            return
        install = kind == "download+install"
        ends = INSTALL_ENDS if install else DOWNLOAD_ENDS
        op = self._start(client, kind, game, ends, "download", {"install": install},
                         cancel=kind == "cancel")  # fmt: skip
        if op.outcome == "download-finished" and not install:
            found = client.manifest(game)
            problems = found.diff(self.expected[game])
            if problems:
                self._problem(f"{client.name} {game} finished but differs: {problems[:3]}")

    def _start(
        self,
        client: PeerHandle,
        kind: str,
        game: str,
        ends: tuple[str, ...],
        cmd: str,
        args: dict[str, bool],
        cancel: bool = False,
    ) -> Op:
        op = Op(client.name, kind, game, client.mark(), ends)
        self._note(op)
        try:
            client.send(cmd, game_id=game, **args)
        except PeerCommandError as exc:  # no sources reachable now, say: refused, not an op
            op.outcome, op.end = f"refused: {exc.code}", client.mark()
            return op
        if cancel:
            began = client.expect_one_of(("download-begin", *ends), where={"game_id": game},
                                         since=op.start, timeout=OP_TIMEOUT)  # fmt: skip
            if began["event"] == "download-begin":
                with contextlib.suppress(PeerCommandError):  # it ended first: not-downloading
                    client.send("cancel-download", game_id=game)
        terminal = client.expect_one_of(ends, where={"game_id": game}, since=op.start,
                                        timeout=OP_TIMEOUT)  # fmt: skip
        op.outcome, op.end = terminal["event"], client.index(terminal) + 1
        return op

    def _dropper(self, stop: threading.Event) -> None:
        """Drop DROPPED into a source now and then, and remove it again."""
        rng = random.Random(f"{self.seed}-drops")
        while not stop.wait(rng.uniform(3.0, 8.0)):
            source = rng.choice(self.sources)
            try:
                if source.process.exited():
                    continue  # (a paused source is waited for: its files can't change frozen)
                if source.game(DROPPED) is None:
                    source.write(f"{DROPPED}/{DROPPED}.eti", b"dropped in by the nemesis run\n")
                    source.write(f"{DROPPED}/version.ini", f"{self.catalog[DROPPED]}\n".encode())
                else:
                    source.remove(DROPPED)
            except AssertionError:  # the source was killed under us; the next round goes on
                continue
