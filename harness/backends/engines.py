"""Which Docker engines a run uses, and which engine each pytest-xdist worker gets.

Pure: no Docker SDK here, so the choice is unit-tested without an engine. An engine is named by
the URL the docker CLI takes for `DOCKER_HOST` (`unix://`, `tcp://`, `ssh://`). With no
`--docker-host`, the run uses `DOCKER_HOST`, else the local socket.

Each pytest-xdist worker keeps to one engine, named in its own environment, as testcontainers
expects: xdist starts every worker from a `--tx` spec, and a spec's `env:NAME=VALUE` is set in
that worker's environment before pytest runs there. A spec's value may not contain "//"
(execnet's `XSpec` splits on it), and every engine URL does, so the spec carries the engine's
index in the run's list (`env:LANPEER_ENGINE=1`), and the worker sets `DOCKER_HOST` to that
engine before its first client. `--docker-host A --docker-host B -n 4` is the short form of
`--tx popen//env:LANPEER_ENGINE=0 --tx popen//env:LANPEER_ENGINE=1` twice over; spelling the
specs out binds workers unevenly (`--tx 3*popen//env:LANPEER_ENGINE=1`). A scenario runs wholly
inside one worker, so its peers and their network stay on one engine.
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
ENGINE_ENV = "LANPEER_ENGINE"
_ENGINE_KEY = f"env:{ENGINE_ENV}="


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


def bind_workers(tx: Sequence[str], engines: Sequence[str]) -> list[str]:
    """xdist's `--tx` specs with every worker bound to an engine: `N*spec` written out, and each
    spec that names no engine given `//env:LANPEER_ENGINE=i`, dealt over the engines in turn
    (gw0 -> first, gw1 -> second, ...). A spec that names one keeps it, if the run has it."""
    if not engines:
        raise EngineError("a run needs at least one engine")
    specs: list[str] = []
    for spec in tx:
        count, star, rest = spec.partition("*")
        specs.extend([rest] * int(count) if star and count.isdigit() else [spec])
    bound = []
    for i, spec in enumerate(specs):
        if _ENGINE_KEY in spec:
            engine_index({ENGINE_ENV: spec.split(_ENGINE_KEY, 1)[1].split("//")[0]}, engines)
            bound.append(spec)
        else:
            bound.append(f"{spec}//{_ENGINE_KEY}{i % len(engines)}")
    return bound


def engine_index(env: Mapping[str, str], engines: Sequence[str]) -> int:
    """The index of this process's engine: `LANPEER_ENGINE` as its xdist spec set it, else 0
    (an undistributed run, or a worker whose controller bound none)."""
    if not engines:
        raise EngineError("a run needs at least one engine")
    value = env.get(ENGINE_ENV, "0")
    if not value.isdigit() or int(value) >= len(engines):
        raise EngineError(
            f"{ENGINE_ENV}={value[:20]!r} names no engine of this run "
            f"(its {len(engines)} engines are 0 to {len(engines) - 1}, in --docker-host order)"
        )
    return int(value)


def worker_engine(env: Mapping[str, str], engines: Sequence[str]) -> str:
    """The engine this process (an xdist worker, or an undistributed run) keeps to."""
    return engines[engine_index(env, engines)]
