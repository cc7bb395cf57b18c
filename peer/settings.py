"""Every tunable of a peer in one place, with the defaults users get."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peer.catalog import Catalog

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    games_dir: Path
    state_dir: Path
    catalog: Catalog
    listen_host: str = "0.0.0.0"
    listen_port: int = 0
    unrar: str | None = None
    fixtures: tuple[str, ...] = ()
    mdns: bool = True
    # Transfer: chunk size as in upstream's seed (32 MiB); chunks in flight per source.
    chunk_size: int = 32 * MIB
    fetch_depth: int = 2
    max_upload_rate: int | None = None
    # Timeouts, in seconds. A peer that vanishes without Goodbye is declared lost once it has
    # been silent for `stale_timeout`; pings go out when a peer was idle for `ping_interval`.
    ping_interval: float = 2.0
    stale_timeout: float = 8.0
    request_timeout: float = 10.0
    # A source hashes a game the first time it is asked for it: minutes for a large one.
    describe_timeout: float = 600.0
    # A chunk whose source sends no byte for this long is given up and re-planned (X08).
    chunk_idle_timeout: float = 5.0
    connect_timeout: float = 5.0
    # How often the games root is rescanned for external changes, and progress sampling.
    scan_interval: float = 1.0
    progress_interval: float = 0.5
