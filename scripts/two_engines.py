"""The scenario matrix split over two Docker engines on this machine (`./lab matrix-two-engines`).

The first engine is the one the lab uses anyway (DOCKER_HOST, else the local socket). The second
is a `dockerd` this script starts and removes: its own socket, data root, exec root, pidfile and
`--config-file` (the machine's daemon.json names the first engine's data root), the first
engine's storage driver, MTU and log settings, `--iptables=false`, and a default bridge of its
own created beforehand and named with `--bridge` (never `--bridge none`: that deletes the first
engine's docker0). Its scenario networks come from an address pool no host route uses.

With br_netfilter on and FORWARD's policy DROP (the first engine's doing), bridged traffic
between two containers of the second engine would be dropped: two ACCEPT rules, from that pool
to that pool and to multicast (mDNS, X02), commented with this run's name, go into DOCKER-USER
(the chain the engine leaves to users) and are deleted at the end. Nothing else of the host's
iptables or bridges is touched.

Then `pytest scenarios -n 4 --docker-host FIRST --docker-host SECOND` (workers alternate between
the engines), a check that neither engine kept anything of the run, and the second engine's
removal (daemon stopped, mounts gone, data and exec roots deleted, bridge and rule removed).
With `--over-ssh` (first argument), the second engine is addressed as `ssh://lanpeer-engine`
through a loopback SSH server (scripts/ssh_engine.py), so the ssh:// path is run for real.
Needs root. Exit status: pytest's, or 1 when something was left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from harness.backends.engines import run_engines
from harness.image import engine_client

ROOT = Path(__file__).resolve().parent.parent
POOL = ipaddress.IPv4Network("10.213.0.0/17")  # the second engine's scenario networks
MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
BRIDGE_NET = ipaddress.IPv4Interface("10.213.255.1/24")  # its default bridge (unused by the lab)
COPIED_SETTINGS = ("storage-driver", "storage-opts", "mtu", "log-driver", "log-opts")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
LOCK = Path(tempfile.gettempdir()) / "lanpeer-two-engines.lock"


def say(line: str) -> None:
    print(f"[two-engines] {line}", file=sys.stderr, flush=True)


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def free_of_routes(net: ipaddress.IPv4Network) -> None:
    for line in run("ip", "-4", "route", "show").splitlines():
        prefix = line.split()[0]
        if prefix != "default" and ipaddress.ip_network(prefix, strict=False).overlaps(net):
            raise RuntimeError(f"{net} overlaps a host route ({line!r}); is another run up?")


def daemon_settings() -> dict[str, object]:
    """The first engine's storage and logging settings, without anything naming its places."""
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(Path("/etc/docker/daemon.json").read_text())
        if isinstance(loaded, dict):
            return {k: v for k, v in loaded.items() if k in COPIED_SETTINGS}
    return {}


class SecondEngine:
    def __init__(self) -> None:
        self.name = f"lp-e2-{os.getpid() % 100000}"  # a bridge name has at most 15 bytes
        self.data = Path(tempfile.mkdtemp(prefix="lanpeer-engine2-", dir="/var/tmp"))
        self.exec_root = Path(f"/run/{self.name}")
        self.url = f"unix://{self.exec_root}/docker.sock"
        self._comment = ["-m", "comment", "--comment", self.name]
        self.rules = [
            ["DOCKER-USER", "-s", str(POOL), "-d", str(dest), *self._comment, "-j", "ACCEPT"]
            for dest in (POOL, MULTICAST)
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge = False
        self.ruled = False

    def start(self) -> None:
        free_of_routes(POOL)
        free_of_routes(BRIDGE_NET.network)
        run("ip", "link", "add", self.name, "type", "bridge")
        self.bridge = True
        run("ip", "addr", "add", str(BRIDGE_NET), "dev", self.name)
        run("ip", "link", "set", self.name, "up")
        if subprocess.run(["iptables", "-n", "-L", "DOCKER-USER"], capture_output=True).returncode:
            say("no DOCKER-USER chain: the first engine does not filter, no rule needed")
        else:
            for rule in self.rules:
                run("iptables", "-I", *rule)
            self.ruled = True
        config = self.data / "daemon.json"
        config.write_text(json.dumps(daemon_settings()))
        self.exec_root.mkdir(mode=0o700)
        argv = [
            "dockerd",
            f"--config-file={config}",
            f"--host={self.url}",
            f"--data-root={self.data / 'data'}",
            f"--exec-root={self.exec_root / 'exec'}",
            f"--pidfile={self.exec_root / 'docker.pid'}",
            f"--bridge={self.name}",
            "--iptables=false",
            "--ip-masq=false",
            f"--default-address-pool=base={POOL},size=24",
            f"--cgroup-parent={self.name}",
        ]
        log = (self.data / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        say(f"started dockerd pid {self.proc.pid} at {self.url} (log {self.data}/dockerd.log)")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the socket appears, then the API answers; nothing to be told instead
            with contextlib.suppress(Exception):
                client = engine_client(self.url, timeout=5)
                client.ping()
                driver = client.info()["Driver"]
                client.close()
                say(f"second engine up: storage driver {driver}")
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.data / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the second dockerd did not come up:\n{tail}")
            time.sleep(0.2)

    def remove(self) -> list[str]:
        """Stop the daemon and remove every trace of it; returns what could not be removed."""
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append("dockerd ignored SIGTERM; killed")
                self.proc.kill()
                self.proc.wait()
        ours = (str(self.data), str(self.exec_root))
        mounts = [m.split()[1] for m in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounts if m.startswith(ours)), reverse=True):
            problems.append(f"still mounted after dockerd stopped: {point}")
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)
        if self.ruled:
            for rule in self.rules:
                run("iptables", "-D", *rule)
        if self.bridge:
            run("ip", "link", "del", self.name)
        for path in (self.data, self.exec_root):
            if path.exists():
                problems.append(f"{path} is still there")
        return problems


@contextlib.contextmanager
def second_engine() -> Iterator[SecondEngine]:
    engine = SecondEngine()
    try:
        engine.start()
        yield engine
    finally:
        for problem in engine.remove():
            say(f"PROBLEM: {problem}")
        say(f"second engine removed ({engine.data} deleted, bridge {engine.name} deleted)")


def leftovers(url: str, run_id: str) -> list[str]:
    client = engine_client(url)
    label = {"label": [f"lanpeer.run={run_id}"]}
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
    found += [f"network {n.name}" for n in client.networks.list(filters=label)]
    client.close()
    return found


def engines_of_scenarios(junit: Path) -> Counter[str]:
    per_engine: Counter[str] = Counter()
    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "engine" in props:
            per_engine[str(props["engine"])] += 1
    return per_engine


def main(pytest_args: list[str]) -> int:
    over_ssh = pytest_args[:1] == ["--over-ssh"]
    pytest_args = pytest_args[over_ssh:]
    if os.geteuid() != 0:
        say("needs root (it starts a dockerd and makes a bridge)")
        return 2
    first = run_engines((), os.environ)[0]
    try:
        lock = FileLock(str(LOCK)).acquire(timeout=0)
    except Timeout:
        say(f"another two-engine run holds {LOCK}")
        return 2
    with lock, second_engine() as second, contextlib.ExitStack() as stack:
        env = dict(os.environ)
        url = second.url
        if over_ssh:
            from ssh_engine import SshEngine

            front = SshEngine(second.url.removeprefix("unix://"), second.data / "home")
            stack.callback(front.close)
            env["HOME"] = str(front.home)
            url = front.url
            say(f"second engine reached as {url} through a loopback SSH server")
        hosts = ["--docker-host", first, "--docker-host", url]
        python = str(ROOT / ".venv" / "bin" / "python")
        started = time.monotonic()
        subprocess.run([python, "-m", "harness.image", *hosts], check=True, cwd=ROOT, env=env)
        say(f"image on both engines in {time.monotonic() - started:.1f}s")
        junit = ROOT / "artifacts" / "two-engines" / "junit.xml"
        junit.parent.mkdir(parents=True, exist_ok=True)
        argv = [python, "-m", "pytest", "scenarios", "-n", "4", *hosts, f"--junitxml={junit}"]
        proc = subprocess.Popen([*argv, *pytest_args], cwd=ROOT, stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        run_id = ""
        for raw in proc.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            found = re.search(rb"run id ([0-9a-f]{12})", raw)
            run_id = run_id or (found.group(1).decode() if found else "")
        rc = proc.wait()
        if not run_id:
            say("pytest never printed its run id; cannot check what it left")
            return rc or 1
        per_engine = engines_of_scenarios(junit) if junit.exists() else Counter()
        left = {u: leftovers(u, run_id) for u in (first, second.url)}
        for u, name in ((first, first), (second.url, url)):
            say(f"{name}: ran {per_engine[name]} tests; left behind: {left[u] or 'nothing'}")
        if over_ssh:
            say(f"SSH sessions served: {front.sessions}")
    return rc or (1 if any(left.values()) else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
