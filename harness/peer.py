"""The handle a scenario holds for one peer: send commands, run its process, inspect its files.

The waits on what the peer says (`expect`, `no_event_since`, `mark` and their kin) are
harness/waiting.py's `Transcript`, which the handle is. What the lab itself does to the peer
(start, kill, restart, commands, file mutations) is kept in `actions` beside them, so the run
report can draw it next to what the peer said.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any

from harness.backends.base import PeerProcess, PeerSpec
from harness.health import Ending, ending_problems, stderr_problems
from harness.manifest import (
    NOT_TRANSFERRED,
    Manifest,
    assert_same,
    rar_members_script,
    remote_script,
)
from harness.waiting import DEFAULT_TIMEOUT, Record, Transcript

POWER_CUT = "powerfs-power-cut"  # powerfs's line on stderr as it cuts an armed peer's power

STOP_GRACE = 20.0  # how long a peer may take to exit after SIGTERM before it counts as hung

_WRITE_EXECUTABLE = (
    "import os, sys; open(sys.argv[1], 'w').write(sys.argv[2]); os.chmod(sys.argv[1], 0o755)"
)


@dataclass(frozen=True)
class Window:
    """Records [start, end) of one operation on one peer, and the event that ended it."""

    start: int
    end: int
    terminal: Record

    @property
    def outcome(self) -> str:
        return str(self.terminal["event"])


class PeerCommandError(AssertionError):
    def __init__(self, record: Record, context: str) -> None:
        super().__init__(
            f"{record.get('cmd')} failed: {record.get('code')}: {record.get('message')}\n{context}"
        )
        self.record = record
        self.code = str(record.get("code"))


class PeerHandle(Transcript):
    """One peer of a scenario: its commands, its process and the files in its world."""

    def __init__(self, process: PeerProcess, spec: PeerSpec) -> None:
        super().__init__(spec.name)
        self.process = process
        self.spec = spec
        self._ids = itertools.count(1)
        self.peer_id = ""
        self.endings: list[Ending] = []  # each run of the process that has ended, in order
        self.expected_errors: set[str] = set()  # error-level log events the scenario causes
        self._killed = False  # this run was SIGKILLed by the lab
        self._thawed = threading.Event()  # cleared while the lab holds the peer paused
        self._thawed.set()

    # -- commands ------------------------------------------------------------------------------

    def request(self, cmd: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Record:
        """Send a command and return its result or error record."""
        request_id = next(self._ids)
        line = json.dumps({"cmd": cmd, "id": request_id, **args})
        self._act("command", cmd=cmd, id=request_id, args=args)
        since = self.mark()
        self.write_line(line)

        def reply(r: Record) -> bool:
            return r.get("type") in ("result", "error") and r.get("id") == request_id

        return self.wait_for_record(reply, since, f"the reply to {line}", timeout)

    def send(self, cmd: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
        """Send a command and return its result data; an error record fails the test."""
        record = self.request(cmd, timeout=timeout, **args)
        if record["type"] == "error":
            raise PeerCommandError(record, self.context())
        return record["data"]

    def send_error(self, cmd: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Record:
        """Send a command that must be refused; returns the error record."""
        record = self.request(cmd, timeout=timeout, **args)
        assert record["type"] == "error", (
            f"{cmd} {args} should have failed but returned {record}\n{self.context()}"
        )
        return record

    def write_line(self, line: str) -> None:
        self.process.write((line + "\n").encode())

    # -- state ---------------------------------------------------------------------------------

    def connect(self, *others: PeerHandle) -> list[Any]:
        """Connect to each of `others` in turn; returns their `connect` results."""
        return [self.send("connect", addr=other.addr) for other in others]

    def download(self, game_id: str, install: bool = False, timeout: float = 180.0) -> Window:
        """Download `game_id` and wait for the operation's terminal event, success or not.

        The returned window spans every record from the command to that event, so a scenario
        can assert what did and did not happen over the whole download.
        """
        start = self.mark()
        self.send("download", game_id=game_id, install=install)
        last = ("install-finished", "install-failed") if install else ("download-finished",)
        terminal = self.expect_one_of(
            (*last, "download-failed"), where={"game_id": game_id}, since=start, timeout=timeout
        )
        return Window(start, self.index(terminal) + 1, terminal)

    def begin_download(self, game_id: str, *sources: PeerHandle) -> int:
        """Start downloading `game_id` (no install) and wait until it has begun from exactly
        `sources`; returns the cursor of the command, for the whole download's window."""
        start = self.mark()
        self.send("download", game_id=game_id, install=False)
        begin = self.expect("download-begin", where={"game_id": game_id}, since=start)
        assert set(begin["sources"]) == {s.addr for s in sources}, begin
        return start

    def stream_install(self, game_id: str, timeout: float = 180.0) -> Window:
        """`stream-install` `game_id` and wait for the operation's terminal event, success or not.

        Like `download`, the window spans every record from the command to that event.
        """
        start = self.mark()
        self.send("stream-install", game_id=game_id)
        terminal = self.expect_one_of(
            ("install-finished", "install-failed", "download-failed"),
            where={"game_id": game_id},
            since=start,
            timeout=timeout,
        )
        return Window(start, self.index(terminal) + 1, terminal)

    def status(self) -> Any:
        return self.send("status")

    def game(self, game_id: str) -> dict[str, Any] | None:
        """This peer's own view of a local game, or None when it has no such root."""
        for game in self.status()["local_games"]:
            if game["game_id"] == game_id:
                return dict(game)
        return None

    def list_games(self) -> dict[str, dict[str, Any]]:
        rows = self.send("list-games")
        ids = [r["game_id"] for r in rows]
        assert len(ids) == len(set(ids)), f"duplicate list-games rows: {ids}"
        return {r["game_id"]: r for r in rows}

    def list_peers(self) -> list[dict[str, Any]]:
        return list(self.send("list-peers"))

    def probe(
        self,
        target: PeerHandle,
        request: dict[str, Any] | None = None,
        chunk: dict[str, Any] | None = None,
        claim: str | None = None,
    ) -> dict[str, Any]:
        """Ask `target` one raw question from inside this peer's world (`python -m peer.probe`).

        With `claim`, the probe introduces itself as that peer id (a spoof); the answer is then
        either `hello` (it was believed) or the refusal as `error`.
        """
        argv = ["python3", "-m", "peer.probe", target.addr]
        if request is not None:
            argv += ["--request", json.dumps(request)]
        if chunk is not None:
            argv += ["--chunk", json.dumps(chunk)]
        if claim is not None:
            argv += ["--claim", claim]
        rc, out = self.run(*argv)
        answers: dict[str, Any] = {}
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("{"):
                answers.update(json.loads(line))
        expected = {"hello", "error"} if claim else {"hello"}
        assert expected & set(answers), f"probe of {target.name} failed (rc={rc}): {out[-500:]!r}"
        return answers

    # -- process -------------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start the peer and wait until it is ready to be connected to."""
        self._start("start", timeout)

    def _start(self, action: str, timeout: float) -> None:
        since = self._launch(action)
        ready = self.expect("local-peer-ready", since=since, timeout=timeout)
        self.addr, self.peer_id = ready["addr"], ready["peer_id"]

    def _launch(self, action: str) -> int:
        """Start the process, recording it (and its throttle); the cursor of its first record."""
        rate = _flag(self.spec.args, "--max-upload-rate")
        self._act(action, args=self.spec.peer_args())
        if rate is not None:
            self._act("throttle", max_upload_rate=rate)
        since = self.mark()
        self._killed = False
        self.process.start(self._sink)
        return since

    def start_into_power_cut(self, syncs: int, timeout: float = DEFAULT_TIMEOUT) -> Record:
        """First start of a power peer with the cut armed at its `syncs`-th sync: the cut's
        line, or `local-peer-ready` if the start needed fewer syncs (the cut is then disarmed)."""
        armed = self.arm_power_cut(syncs)
        since = self._launch("start")
        end = self.power_cut_or(armed, ("local-peer-ready",), since, timeout=timeout)
        if end.get("event") == "local-peer-ready":
            self.addr, self.peer_id = end["addr"], end["peer_id"]
            self.disarm_power_cut()
        return end

    def kill(self) -> None:
        self._act("kill")
        self._kill()

    def power_cut(self) -> None:
        """Cut a power peer's power (Lab.peer(power=True)): the peer and its powerfs mount die
        at once, and with them every byte and directory change it never fsynced. `restart` is
        the reboot."""
        assert self.spec.power, f"{self.name} is not on powerfs; a kill keeps the page cache"
        self._act("power-cut")
        self._kill()

    def arm_power_cut(self, syncs: int) -> int:
        """The power goes at this power peer's `syncs`-th fsync or fsyncdir from now (from its
        next start, if it is stopped), before that sync reaches its disk; `power_cut_or` sees
        it happen. The returned cursor is for that wait."""
        assert self.spec.power, f"{self.name} is not on powerfs"
        self._act("arm-power-cut", syncs=syncs)
        with self._cond:
            since = len(self.stderr)
        self.process.arm_power_cut(syncs)
        return since

    def disarm_power_cut(self) -> None:
        """Take back an arming that has not fired (read by powerfs at its next sync)."""
        self._act("disarm-power-cut")
        self.process.arm_power_cut(0)

    def power_cut_or(
        self, armed: int, events: tuple[str, ...], since: int, timeout: float = DEFAULT_TIMEOUT
    ) -> Record:
        """Wait for whichever comes first: the armed cut (powerfs's own line on stderr says
        which sync it took; the peer's world is then down and counted as killed by the lab, and
        that line is returned) or one of `events` from `since` on (that record is returned; the
        cut stays armed)."""
        found = self.log_line_or(POWER_CUT, armed, events, since, timeout)
        if found.get("event") != POWER_CUT:
            return found
        self._act("power-cut", sync=found.get("sync"), op=found.get("op"), path=found.get("path"))
        self._kill()  # reaps what the cut left (the container's init, the local supervisor)
        return found

    def _kill(self) -> None:
        self._killed = True
        self.process.kill()  # thaws a paused peer first
        self._thawed.set()
        self._ended()

    def pause(self) -> None:
        """Freeze the whole peer, as a closed laptop lid does (`resume` thaws it)."""
        self._act("pause")
        self._thawed.clear()
        self.process.pause()

    def resume(self) -> None:
        self._act("resume")
        self.process.resume()
        self._thawed.set()

    def _exec(self, argv: list[str]) -> tuple[int, bytes]:
        """Run a command in the peer's world once it is not frozen: nobody reads a closed
        laptop's disk, and an exec into a frozen container can wedge the engine until thawed."""
        if not self._thawed.wait(timeout=DEFAULT_TIMEOUT * 2):
            raise AssertionError(f"peer {self.name} stayed paused; cannot run {argv[:2]}")
        return self.process.run(argv)

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Kill if running, then start again with the same state dir and games root."""
        if not self.process.exited():
            self._killed = True
            self.process.kill()
        self._thawed.set()
        self._ended()
        self._start("restart", timeout)

    def _ended(self) -> None:
        """Note how the run that just ended ended (once per run)."""
        status = self.process.exit_status()
        if status is not None and len(self.endings) < self.runs():
            self.endings.append(Ending(status, self._killed))
            self._act("exited", status=status, killed=self._killed)

    def runs(self) -> int:
        return sum(1 for a in self.actions if a["action"] in ("start", "restart"))

    def end(self, grace: float = STOP_GRACE) -> list[str]:
        """Stop the peer as a supervisor would (SIGTERM) unless it already ended, and judge
        every run it had (health.py): the problems, each naming this peer, or []."""
        if self.runs() and not self.process.exited():
            self._act("sigterm")
            status = self.process.terminate(grace)  # thaws a paused peer first
            self._thawed.set()
            if status is None:
                self.endings.append(Ending(None, False))
                self._act("hung", grace_s=grace)
        self._ended()
        with self._cond:
            stderr = list(self.stderr)
        problems = [p for e in self.endings for p in ending_problems(e)]
        problems += stderr_problems(stderr, self.expected_errors)
        return [f"peer {self.name}: {p}" for p in problems]

    def take_identity_of(self, other: PeerHandle, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Restart with a copy of `other`'s state dir (its key, so its peer id), as a user who
        copied a configured peer's state dir to a second machine would. The files are replaced
        under the running peer (a container cannot be written to once stopped), which reads
        them only at start."""
        self._act("take-identity", of=other.name)
        for name in ("tls-key.pem", "tls-cert.pem", "identity.json"):
            rc, data = other._look("cat", other.process.state_path(name))
            assert rc == 0, f"cannot read {name} of {other.name}: {data[-300:]!r}"
            self._put(self.process.state_path(name), data)
        self.restart(timeout=timeout)

    # -- files ---------------------------------------------------------------------------------

    def run(self, *argv: str) -> tuple[int, bytes]:
        """Run a command in the peer's world; recorded, since it may change the peer's files."""
        self._act("run", argv=[a[:80] for a in argv[:8]])
        return self._exec(list(argv))

    def _look(self, *argv: str) -> tuple[int, bytes]:
        """Run a read-only command in the peer's world (not a lab action worth recording)."""
        return self._exec(list(argv))

    def exists(self, rel: str) -> bool:
        rc, _ = self._look("test", "-e", self.process.path(rel))
        return rc == 0

    def read(self, rel: str) -> bytes:
        rc, out = self._look("cat", self.process.path(rel))
        assert rc == 0, f"cannot read {rel} on {self.name}: {out[-300:]!r}"
        return out

    def write(self, rel: str, data: bytes) -> None:
        """Create or replace a file in the games root atomically (as an external tool would)."""
        self._act("write", path=rel, bytes=len(data))
        self._put(self.process.path(rel), data)

    def write_executable(self, path: str, text: str) -> None:
        """Write an executable script at `path` in this peer's world (see Backend.scratch)."""
        self._act("write", path=path, bytes=len(text), executable=True)
        rc, out = self._exec(["python3", "-c", _WRITE_EXECUTABLE, path, text])
        assert rc == 0, f"cannot write {path} in {self.name}'s world: {out!r}"

    def _put(self, path: str, data: bytes) -> None:
        script = (
            "import os, sys\n"
            "p = sys.argv[1]\n"
            "os.makedirs(os.path.dirname(p), exist_ok=True)\n"
            "open(p + '.tmp', 'wb').write(bytes.fromhex(sys.argv[2]))\n"
            "os.replace(p + '.tmp', p)\n"
        )
        rc, out = self._exec(["python3", "-c", script, path, data.hex()])
        assert rc == 0, f"cannot write {path} on {self.name}: {out[-300:]!r}"

    def remove(self, rel: str) -> None:
        self._act("remove", path=rel)
        rc, out = self._exec(["rm", "-rf", self.process.path(rel)])
        assert rc == 0, f"cannot remove {rel} on {self.name}: {out[-300:]!r}"

    def forget(self, game_id: str, timeout: float = 30.0) -> None:
        """Delete a game root as a person would, and wait until the peer has noticed."""
        since = self.mark()
        self.remove(game_id)
        self.expect("local-library-changed", since=since, timeout=timeout)

    def delivered(self, window: Window) -> dict[str, int]:
        """Bytes each source address delivered to the download in `window`."""
        chunks = self.events("download-chunk-finished", since=window.start, until=window.end)
        return chunk_bytes_by_source(chunks)

    def files(self, game_id: str) -> list[str]:
        """Every regular file under the game root, relative to it (including `local/`)."""
        return sorted(self.manifest(game_id, skip=()).files)

    def assert_stream_installed(self, game_id: str, expected: Manifest) -> None:
        """The end state of a streamed install (S39-S47): `LocalOnly`, only `local/` kept (no
        archive, no sentinel, no staging), `local/` equal to `expected` (what `unrar p` printed
        at the source), and no operation left running."""
        game = self.game(game_id)
        assert game is not None, f"{game_id} is not in {self.name}'s library\n{self.context()}"
        state = (game["downloaded"], game["installed"], game["availability"])
        assert state == (False, True, "LocalOnly"), game
        assert self.files(game_id) == sorted(f"local/{p}" for p in expected.files), "only local/"
        assert not self.exists(f"{game_id}/.local.installing")
        local = self.manifest(f"{game_id}/local", skip=())
        assert_same(local, expected, f"{self.name}'s local/ vs unrar p at the source")
        assert self.status()["active_operations"] == []

    def manifest(self, game_id: str, skip: tuple[str, ...] = NOT_TRANSFERRED) -> Manifest:
        root = self.process.path(game_id)
        rc, out = self._look("python3", "-c", remote_script(root, list(skip)))
        assert rc == 0, f"manifest of {game_id} on {self.name} failed: {out[-500:]!r}"
        return Manifest.from_scan(json.loads(out))

    def rar_members(self, unrar: str, *archives: str) -> Manifest:
        """Each file member of these root archives (games-root relative) as `unrar p` prints it
        in this peer's world: member path -> (size, sha256)."""
        paths = [self.process.path(a) for a in archives]
        rc, out = self._look("python3", "-c", rar_members_script(unrar, paths))
        assert rc == 0, f"unrar p of {archives} on {self.name} failed: {out[-500:]!r}"
        return Manifest.from_scan(json.loads(out))


def _flag(args: tuple[str, ...], name: str) -> str | None:
    """The value after `name` in a peer's extra arguments, if it is there."""
    return next((args[i + 1] for i, a in enumerate(args[:-1]) if a == name), None)


def chunk_bytes_by_source(chunk_events: list[Record], path: str | None = None) -> dict[str, int]:
    """Bytes each source address delivered, from `download-chunk-finished` events."""
    totals: dict[str, int] = {}
    for e in chunk_events:
        if path is None or e["path"] == path:
            totals[e["peer_addr"]] = totals.get(e["peer_addr"], 0) + int(e["bytes"])
    return totals
