"""A connect whose handshake never completes (a cut, a peer gone) frees its socket cleanly.

Every redial through a cut is such a connect, so a leak or a stray error here repeats every
few seconds for as long as the cut lasts. Closing the socket under aioquic's still-running
timer once made asyncio log "Exception in callback _handle_timer" (which the lab's peer-health
check fails a scenario for); not retrieving the failed handshake waiter logged "Future
exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from peer.endpoint import ControlEndpoint
from peer.errors import PeerError
from peer.identity import load_or_create_identity


async def test_a_handshake_into_a_black_hole_fails_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    async def answer(_conn: Any, _request: Any) -> Any:
        raise AssertionError("nothing should arrive")

    endpoint = ControlEndpoint(
        load_or_create_identity(tmp_path), answer, lambda _c: None, 5.0, 10.0
    )
    made: list[Any] = []
    make = endpoint._protocol

    def spy(*args: Any, **kwargs: Any) -> Any:
        made.append(make(*args, **kwargs))
        return made[-1]

    endpoint._protocol = spy  # type: ignore[method-assign]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:  # takes packets, never answers
        hole.bind(("127.0.0.1", 0))
        with pytest.raises(PeerError) as err:
            await endpoint.connect("127.0.0.1", hole.getsockname()[1], 0.5)
        assert err.value.code == "connect-failed"
        await asyncio.gather(*endpoint._disposing)
    # The window in which a stray timer could fire lasts until the connection is closed.
    (protocol,) = made
    async with asyncio.timeout(15):
        await protocol.wait_closed()
    assert reported == [], reported
    endpoint.close()
