"""A reply that comes after its request timed out (a slow or cut link, a freeze) is dropped.

Found by the nemesis run: such a late reply was taken for a request on a stream we had opened
and already finished, served, and answered on that stream, which raised "Cannot send data
after FIN" in a task nobody awaited ("Task exception was never retrieved" on stderr).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.identity import load_or_create_identity
from peer.protocol import Ok, Ping, Request
from peer.quic import ControlConnection


async def test_a_reply_after_the_timeout_is_dropped_not_served(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    answered = asyncio.Event()
    served_on_client: list[Request] = []

    async def slow(_conn: ControlConnection, _request: Request) -> Any:
        await asyncio.sleep(0.5)  # the server is slow, past the client's timeout
        answered.set()
        return Ok()

    async def client_side(_conn: ControlConnection, request: Request) -> Any:
        served_on_client.append(request)
        return Ok()

    server = ControlEndpoint(load_or_create_identity(tmp_path / "s"), slow, lambda _c: None, 5, 60)
    port = await server.listen("127.0.0.1", 0)
    client = ControlEndpoint(
        load_or_create_identity(tmp_path / "c"), client_side, lambda _c: None, 5, 60
    )
    conn = await client.connect("127.0.0.1", port, timeout=5.0)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(PeerError, match="no reply"):
            await conn.request(Ping("0" * 32), timeout=0.1)
        await asyncio.wait_for(answered.wait(), 5)
        assert isinstance(await conn.request(Ping("0" * 32), timeout=5), Ok)  # the late one came
    assert logs == [], "the late reply was answered or refused, not dropped"
    assert served_on_client == [], "a late reply was served as if it were a request"
    assert reported == [], reported
    client.close()
    server.close()
