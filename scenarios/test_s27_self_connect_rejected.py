"""S27 Self-connect rejection: a clean refusal, no self entry, the peer keeps answering."""

import pytest

from harness.lab import Lab


@pytest.mark.scenario("S27")
def test_s27_self_connect_rejection(lab: Lab) -> None:
    alpha = lab.peer("alpha", fixture="fixture-alpha")
    port = alpha.addr.rpartition(":")[2]
    for addr in (alpha.addr, f"127.0.0.1:{port}"):
        error = alpha.send_error("connect", addr=addr)
        assert error["code"] == "self-connect", error
        assert error["message"].startswith("cannot connect peer to itself")
    assert alpha.list_peers() == []
    assert alpha.status()["peer_count"] == 0
    alpha.no_event_since("peer-connected")
