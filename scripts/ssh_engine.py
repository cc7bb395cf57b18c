"""An SSH front for a local Docker engine, so `--docker-host ssh://...` is exercised for real.

The Docker SDK reaches an `ssh://` engine by running `docker system dial-stdio` over SSH, which
is a byte pipe to the engine's socket. This serves exactly that (and refuses anything else) on
127.0.0.1, with a host key and one client key made for the occasion, and writes a HOME whose
~/.ssh holds the client's config and known_hosts: a pytest run with that HOME reaches the engine
as `ssh://lanpeer-engine:PORT`, through paramiko's full client path (config lookup, host key
check, public-key auth). Used by `scripts/two_engines.py --over-ssh`; nothing of the real
~/.ssh is read or written.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import paramiko

HOST_ALIAS = "lanpeer-engine"
USER = "lanpeer"
DIAL = b"docker system dial-stdio"


def _pipe(read: socket.socket | paramiko.Channel, write: socket.socket | paramiko.Channel) -> None:
    with contextlib.suppress(OSError, EOFError):
        while data := read.recv(65536):
            write.sendall(data)
    with contextlib.suppress(OSError, EOFError):
        if isinstance(write, paramiko.Channel):
            write.shutdown_write()
        else:
            write.shutdown(socket.SHUT_WR)


class _Server(paramiko.ServerInterface):  # type: ignore[misc]
    def __init__(self, client_key: paramiko.PKey, engine_socket: str) -> None:
        self.client_key = client_key
        self.engine_socket = engine_socket

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == USER and key == self.client_key
        return int(paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED)

    def check_channel_request(self, kind: str, chanid: int) -> int:
        ok = kind == "session"
        return int(
            paramiko.OPEN_SUCCEEDED if ok else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        )

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if command != DIAL:
            return False
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(self.engine_socket)

        def both() -> None:
            back = threading.Thread(target=_pipe, args=(engine, channel), daemon=True)
            back.start()
            _pipe(channel, engine)
            back.join()
            with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
                channel.send_exit_status(0)  # the client may have hung up already
                channel.close()
            engine.close()

        threading.Thread(target=both, daemon=True).start()
        return True


class SshEngine:
    """Listen on 127.0.0.1; `url` and `home` say how a client reaches the engine through it."""

    def __init__(self, engine_socket: str, home: Path) -> None:
        self.host_key = paramiko.RSAKey.generate(2048)
        client_key = paramiko.RSAKey.generate(2048)
        self.listener = socket.create_server(("127.0.0.1", 0))
        port = self.listener.getsockname()[1]
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, mode=0o700)
        client_key.write_private_key_file(str(ssh / "id_lanpeer"))
        (ssh / "config").write_text(
            f"Host {HOST_ALIAS}\n  HostName 127.0.0.1\n  User {USER}\n"
            f"  IdentityFile {ssh / 'id_lanpeer'}\n"
        )
        known = f"[127.0.0.1]:{port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"
        (ssh / "known_hosts").write_text(known)
        self.home = home
        # The SDK fills in port 22 before it reads ~/.ssh/config, so the port goes in the URL.
        self.url = f"ssh://{HOST_ALIAS}:{port}"
        self.sessions = 0
        self._server = _Server(client_key, engine_socket)
        self._transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                transport.start_server(server=self._server)
                self._transports.append(transport)
                self.sessions += 1

    def close(self) -> None:
        self.listener.close()
        for transport in self._transports:
            transport.close()
