"""`lanpeer`: a headless peer driven by JSON lines on stdin, reporting JSON lines on stdout.

Logs (structlog, JSON) go to stderr; stdout carries only event/result/error records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import sys
from pathlib import Path
from typing import NoReturn

import structlog

from peer.catalog import load_catalog
from peer.commands import CommandError, parse_command
from peer.console import SPECS
from peer.errors import PeerError
from peer.node import Node
from peer.output import Output
from peer.protocol import MAX_CHUNK
from peer.settings import Settings
from peer.stdin import TOO_LONG, FdLines, stdin_lines

MAX_LINE = 1024 * 1024

# The defaults users get are Settings' own; the parser only shows them.
DEFAULT = Settings(games_dir=Path(), state_dir=Path(), catalog={})


class _JsonFormatter(logging.Formatter):
    """Renders stdlib records (aioquic's, for one) as JSON lines like structlog's."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
        }
        if record.exc_info:  # asyncio's "Exception in callback" is useless without it
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # aioquic narrates every handshake at INFO; keep it for --log-level debug only.
    logging.getLogger("quic").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _chunk_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CHUNK:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CHUNK}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but misuse is a refusal like any other: a JSON record, not only usage text."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise PeerError("bad-argument", message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lanpeer", description=__doc__)
    p.add_argument("--games-dir", type=Path, required=True, help="games root to serve and fill")
    p.add_argument("--state-dir", type=Path, required=True, help="identity and markers")
    p.add_argument("--catalog", type=Path, help="catalog JSON (default: the bundled catalog)")
    p.add_argument(
        "--fixture",
        action="append",
        default=[],
        metavar="GAME_ID",
        help="seed a tiny archive game (repeatable)",
    )
    p.add_argument(
        "--unrar",
        help="external unrar for real installs and streams (default: fixture unpacker); looked"
        " up when used, so a missing one fails that install or stream, not the start",
    )
    p.add_argument(
        "--listen",
        default=f"{DEFAULT.listen_host}:{DEFAULT.listen_port}",
        metavar="HOST[:PORT]",
        help="address to listen on; port 0 (default) picks a free one",
    )
    p.add_argument(
        "--no-mdns",
        dest="mdns",
        action="store_false",
        help="neither announce nor discover peers by mDNS (peers then join by `connect`)",
    )
    p.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=DEFAULT.chunk_size,
        metavar="BYTES",
        help="chunk size this peer's downloads are hashed and fetched in (default %(default)s)",
    )
    p.add_argument(
        "--max-upload-rate",
        type=_positive_int,
        metavar="BYTES_PER_S",
        help="cap on the sum of all uploads (default: unlimited)",
    )
    p.add_argument(
        "--ping-interval",
        type=_positive_float,
        default=DEFAULT.ping_interval,
        metavar="S",
        help="ping a peer after this many idle seconds (default %(default)s)",
    )
    p.add_argument(
        "--stale-timeout",
        type=_positive_float,
        default=DEFAULT.stale_timeout,
        metavar="S",
        help="declare a silent peer lost after this many seconds (default %(default)s)",
    )
    p.add_argument(
        "--scan-interval",
        type=_positive_float,
        default=DEFAULT.scan_interval,
        metavar="S",
        help="rescan the games root for external changes this often (default %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    host, _, port = str(args.listen).rpartition(":")
    if not host:
        host, port = str(args.listen), "0"
    if not port.isdigit() or int(port) > 65535:
        raise PeerError("bad-address", f"--listen {args.listen!r}: expected HOST[:PORT]")
    return Settings(
        games_dir=args.games_dir,
        state_dir=args.state_dir,
        catalog=load_catalog(args.catalog),
        listen_host=host,
        listen_port=int(port),
        unrar=args.unrar,
        fixtures=tuple(args.fixture),
        mdns=args.mdns,
        chunk_size=args.chunk_size,
        max_upload_rate=args.max_upload_rate,
        ping_interval=args.ping_interval,
        stale_timeout=args.stale_timeout,
        scan_interval=args.scan_interval,
    )


async def _run_one(peer: Node, out: Output, line: str) -> None:
    """Answer one stdin line with exactly one record, whatever happens."""
    cmd = None
    try:
        cmd = parse_command(line, SPECS)
        data = await peer.run_command(cmd)
    except CommandError as exc:
        out.error(exc.cmd, exc.request_id, exc.code, exc.message)
        return
    except Exception as exc:  # the peer must keep serving whatever one command does
        name, request_id = (cmd.name, cmd.request_id) if cmd else (None, None)
        if isinstance(exc, PeerError):
            out.error(name, request_id, exc.code, exc.message)
            return
        structlog.get_logger("cli").exception("command crashed", cmd=name)
        out.error(name, request_id, "internal", f"{type(exc).__name__}: {exc}")
        return
    out.result(cmd.name, cmd.request_id, data)


async def serve_stdin(peer: Node, out: Output) -> None:
    lines = stdin_lines(FdLines(0), MAX_LINE)
    while not peer.stopping.is_set():
        raw = await lines.get()
        if raw is None:
            break  # EOF: whoever drove us is gone
        if raw is TOO_LONG:
            out.error(None, None, "line-too-long", f"command lines are limited to {MAX_LINE} bytes")
            continue
        line = raw.decode("utf-8", errors="replace").strip()
        if line:
            peer.spawn(_run_one(peer, out, line), "command")


async def amain(settings: Settings, out: Output) -> int:
    peer = Node(settings, out.event)
    # Taken before start: a SIGTERM that comes as soon as the peer says it is ready (a
    # supervisor's, or the lab's) must be a clean stop, not the default action's death (143).
    asked = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, asked.set)
    try:
        await peer.start()
    except BaseException:
        await peer.shutdown()  # let go of what was taken (locks, sockets) before refusing
        raise
    ends = {
        asyncio.create_task(serve_stdin(peer, out)),  # EOF: whoever drove us is gone
        asyncio.create_task(asked.wait()),  # SIGTERM or SIGINT
        asyncio.create_task(peer.stopping.wait()),  # the `shutdown` command
    }
    await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    await peer.shutdown()  # returns once done, whoever started it
    for task in ends:
        task.cancel()
    # The stop is done but the process has still to end (threads joined, the loop closed). A
    # SIGTERM now asks for what is under way; its default action would only turn the clean
    # exit into a death (143), and closing the loop would restore that default.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)
    out.event("cli-stopped", peer_id=peer.peer_id)
    return 0


def main(argv: list[str] | None = None) -> int:
    out = Output()
    try:
        args = build_parser().parse_args(argv)
    except PeerError as exc:
        out.error(None, None, exc.code, exc.message)
        return 2
    configure_logging(args.log_level)
    out.event("cli-started", argv=sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from_args(args)
        return asyncio.run(amain(settings, out))
    except PeerError as exc:
        out.error(None, None, exc.code, exc.message)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
