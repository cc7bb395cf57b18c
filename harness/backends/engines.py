"""Which Docker engines a run uses, and which engine each pytest-xdist worker gets.

Pure: no Docker SDK here, so the choice is unit-tested without an engine. An engine is named by
the URL the docker CLI takes for `DOCKER_HOST` (`unix://`, `tcp://`, `ssh://`). With no
`--docker-host`, the run uses `DOCKER_HOST`, else the local socket. Workers are dealt out over
the engines in turn (gw0 -> first, gw1 -> second, ...); a scenario runs wholly inside one worker,
so its peers and their network stay on one engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
MAX_URL = 512

_FORMS = {
    "unix": re.compile(r"unix:///[^\s\x00]*\Z"),
    "tcp": re.compile(r"tcp://[A-Za-z0-9\[][A-Za-z0-9.\-\[\]:]*:\d{1,5}\Z"),
    # Neither user nor host may start with "-": ssh would take it for an option.
    "ssh": re.compile(
        r"ssh://([A-Za-z0-9_][A-Za-z0-9._\-]*@)?[A-Za-z0-9\[][A-Za-z0-9.\-\[\]:]*(:\d{1,5})?\Z"
    ),
}
_WORKER = re.compile(r"gw(\d+)\Z")


class EngineError(ValueError):
    """A `--docker-host` / `DOCKER_HOST` value that names no engine the lab can use."""


def parse_engine(url: str) -> str:
    """`url` itself when it is a `unix://`, `tcp://` or `ssh://` engine address."""
    scheme = url.partition("://")[0]
    form = _FORMS.get(scheme)
    if len(url) > MAX_URL or form is None or not form.match(url):
        raise EngineError(
            f"not a Docker engine address: {url[:80]!r} (use unix:///path/docker.sock, "
            "tcp://host:port or ssh://[user@]host[:port])"
        )
    return url


def run_engines(given: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """The run's engines in order, without duplicates: `--docker-host` values, else
    `DOCKER_HOST`, else the local socket."""
    urls = list(given) or [env.get("DOCKER_HOST") or DEFAULT_ENGINE]
    return tuple(dict.fromkeys(parse_engine(u) for u in urls))


def engine_for(worker: str, engines: Sequence[str]) -> str:
    """The engine of xdist worker `worker` ("gw3"); an undistributed run ("master") takes the
    first."""
    if not engines:
        raise EngineError("a run needs at least one engine")
    match = _WORKER.match(worker)
    return engines[int(match.group(1)) % len(engines) if match else 0]
