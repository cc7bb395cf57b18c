"""The peer's identity: created once per state dir, private, and derived from its key."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from peer.errors import PeerError
from peer.identity import fingerprint, load_or_create_identity


def test_identity_is_created_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    again = load_or_create_identity(tmp_path)
    assert first == again and len(first.peer_id) == 32
    assert (tmp_path / "tls-key.pem").stat().st_mode & 0o077 == 0, "key is private"
    assert json.loads((tmp_path / "identity.json").read_text()) == {"peer_id": first.peer_id}
    # The names are an interface: people (and the lab's take_identity_of) copy these files.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "identity.json",
        "tls-cert.pem",
        "tls-key.pem",
    ]


def test_the_peer_id_is_the_certificates_key_fingerprint(tmp_path: Path) -> None:
    identity = load_or_create_identity(tmp_path)
    cert = x509.load_pem_x509_certificate(identity.cert_path.read_bytes())
    assert identity.peer_id == fingerprint(cert)
    other = load_or_create_identity(tmp_path / "other")
    assert other.peer_id != identity.peer_id, "a new key is a new peer"


def test_a_copied_state_dir_is_the_same_identity(tmp_path: Path) -> None:
    original = load_or_create_identity(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_or_create_identity(tmp_path / "b").peer_id == original.peer_id


def refusal(state: Path) -> str:
    with pytest.raises(PeerError) as refused:
        load_or_create_identity(state)
    assert refused.value.code == "bad-state-dir"
    return refused.value.message


def test_an_id_that_the_key_does_not_prove_is_refused(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    (tmp_path / "identity.json").write_text(json.dumps({"peer_id": "0" * 32}))
    assert "is the key of peer" in refusal(tmp_path)


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path / "a")
    load_or_create_identity(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "tls-key.pem", tmp_path / "a" / "tls-key.pem")
    assert "is not the key of" in refusal(tmp_path / "a")


def test_an_id_whose_key_is_gone_is_refused_not_replaced(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    (tmp_path / "tls-key.pem").unlink()
    assert "is gone" in refusal(tmp_path)


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"peer_id": 7}', b"\xff\xfe", b" " * 70_000]
)
def test_a_corrupt_identity_file_is_refused(tmp_path: Path, content: bytes) -> None:
    load_or_create_identity(tmp_path)
    (tmp_path / "identity.json").write_bytes(content)
    refusal(tmp_path)


def test_state_files_are_not_followed_through_links(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path / "a")
    load_or_create_identity(tmp_path / "b")
    (tmp_path / "a" / "tls-key.pem").unlink()
    (tmp_path / "a" / "tls-key.pem").symlink_to(tmp_path / "b" / "tls-key.pem")
    refusal(tmp_path / "a")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "directory", "link"])
def test_a_temporary_state_name_of_another_kind_neither_stalls_nor_redirects(
    tmp_path: Path, kind: str
) -> None:
    """A FIFO at the key's temporary name blocked start-up forever (issue 17 class 6)."""
    state = tmp_path / "state"
    state.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    tmp = state / "tls-key.pem.tmp"
    if kind == "fifo":
        os.mkfifo(tmp)
    elif kind == "directory":
        tmp.mkdir()
    else:
        tmp.symlink_to(outside)
    identity = load_or_create_identity(state)
    assert identity.key_path.is_file() and outside.read_bytes() == b"precious"
    assert (os.stat(identity.key_path).st_mode & 0o777) == 0o600
