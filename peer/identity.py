"""The peer's identity: a stable peer id and a TLS certificate, created once per state dir.

Peers recognise each other by peer id, not by address, so a restart on a new port updates the
existing entry instead of creating a second one (S11).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from peer.errors import PeerError


@dataclass(frozen=True)
class Identity:
    peer_id: str
    cert_path: Path
    key_path: Path


def uuid7_hex(now_ms: int | None = None) -> str:
    """A UUIDv7 in 32-hex simple form: time-ordered, like upstream's `019e347d...` ids."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return f"{value:032x}"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_certificate(peer_id: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lanpeer-{peer_id}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def load_or_create_identity(state_dir: Path) -> Identity:
    """Reuse the identity in `state_dir`, creating it (id, key, cert) on first start."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        id_path = state_dir / "identity.json"
        cert_path = state_dir / "tls-cert.pem"
        key_path = state_dir / "tls-key.pem"
        if id_path.exists():
            peer_id = json.loads(id_path.read_text())["peer_id"]
            if not (isinstance(peer_id, str) and re.fullmatch(r"[0-9a-f]{32}", peer_id)):
                raise ValueError(f"{id_path} holds no 32-hex peer_id")
        else:
            peer_id = uuid7_hex()
            _write_private(id_path, json.dumps({"peer_id": peer_id}).encode())
        if not (cert_path.exists() and key_path.exists()):
            cert_pem, key_pem = _make_certificate(peer_id)
            _write_private(key_path, key_pem)
            _write_private(cert_path, cert_pem)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PeerError("bad-state-dir", f"cannot use state dir {state_dir}: {exc}") from exc
    return Identity(peer_id=peer_id, cert_path=cert_path, key_path=key_path)
