"""Fixtures the fast tests share by name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import Start, nodes_in


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Whole nodes in this test's event loop (tests/nodes.py), each shut down at its end."""
    async with nodes_in(tmp_path) as start_peer:
        yield start_peer
