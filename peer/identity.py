"""The peer's identity: a TLS key, and a peer id derived from it, created once per state dir.

Peers recognise each other by peer id, not by address, so a restart on a new port updates the
existing entry instead of creating a second one (S11). The id is the key's fingerprint (the
first 128 bits of the SHA-256 of its SubjectPublicKeyInfo), as Syncthing derives a device ID
from its certificate: both ends present certificates in the QUIC handshake (`quic.py`), so a
peer cannot claim an id without holding its key. Two processes started from one copied state
dir share a key, and so an id; `links.py` tells them apart and reports them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from peer.errors import PeerError
from peer.files import clear_wrong_kind, read_small_file, replace_durably, write_file

MAX_STATE_FILE = 64 * 1024  # an identity.json, key or certificate is a few hundred bytes


@dataclass(frozen=True)
class Identity:
    peer_id: str
    cert_path: Path
    key_path: Path


def fingerprint(certificate: x509.Certificate) -> str:
    """The peer id a certificate proves: 32 hex digits of its public key's SHA-256."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()[:32]


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    clear_wrong_kind(tmp, directory=False)  # a FIFO or link left there must not stall or redirect
    write_file(tmp, data, 0o600)
    replace_durably(tmp, path)


def _make_certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lanpeer")])
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


def _load_key_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    """The certificate, after checking that the key beside it is the one it certifies."""
    cert = x509.load_pem_x509_certificate(read_small_file(cert_path, MAX_STATE_FILE))
    key = serialization.load_pem_private_key(
        read_small_file(key_path, MAX_STATE_FILE), password=None
    )
    if key.public_key() != cert.public_key():
        raise ValueError(f"{key_path.name} is not the key of {cert_path.name}")
    return cert


def load_or_create_identity(state_dir: Path) -> Identity:
    """Reuse the key in `state_dir`, creating it on first start; the peer id follows from it.

    `identity.json` records the id for people and scripts. If it names another id than the
    key proves, the state dir was tampered with or half-copied: refuse rather than guess.
    """
    id_path = state_dir / "identity.json"
    cert_path = state_dir / "tls-cert.pem"
    key_path = state_dir / "tls-key.pem"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        if not (cert_path.exists() and key_path.exists()):
            if id_path.exists():
                raise ValueError(f"{id_path.name} exists but the TLS key it belongs to is gone")
            cert_pem, key_pem = _make_certificate()
            _write_private(key_path, key_pem)
            _write_private(cert_path, cert_pem)
        peer_id = fingerprint(_load_key_pair(cert_path, key_path))
        if id_path.exists():
            recorded = json.loads(read_small_file(id_path, MAX_STATE_FILE)).get("peer_id")
            if recorded != peer_id:
                raise ValueError(
                    f"{id_path.name} names peer {recorded!r}, but {key_path.name} is the key of"
                    f" peer {peer_id}; delete {id_path.name} to adopt the key's id"
                )
        else:
            _write_private(id_path, json.dumps({"peer_id": peer_id}).encode())
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise PeerError("bad-state-dir", f"cannot use state dir {state_dir}: {exc}") from exc
    return Identity(peer_id=peer_id, cert_path=cert_path, key_path=key_path)
