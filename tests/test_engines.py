"""Which engines a run uses and which engine each xdist worker gets (harness.backends.engines)."""

from __future__ import annotations

import pytest

from harness.backends.engines import (
    DEFAULT_ENGINE,
    EngineError,
    engine_for,
    parse_engine,
    run_engines,
)

A = "unix:///var/run/docker.sock"
B = "unix:///run/lp-e2/docker.sock"
C = "ssh://builder@big-box:2222"


@pytest.mark.parametrize(
    "url",
    [A, "tcp://10.0.0.5:2376", "tcp://[fd00::1]:2375", "ssh://big-box", C, "ssh://[fd00::2]:22"],
)
def test_engine_addresses_the_docker_cli_takes_are_accepted(url: str) -> None:
    assert parse_engine(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/var/run/docker.sock",  # no scheme
        "unix://relative.sock",
        "tcp://host",  # no port
        "http://host:2375",
        "ssh://user@host:22/path",
        "ssh://-oProxyCommand=evil",  # would be an option to ssh
        "ssh://-oProxyJump",
        "ssh://-l@host",
        "tcp://-h:2375",
        "ssh://host\n",
        "unix:///" + "x" * 600,
    ],
    ids=[
        "empty",
        "path",
        "relative",
        "noport",
        "http",
        "path-tail",
        "option",
        "option-bare",
        "option-user",
        "tcp-dash",
        "newline",
        "long",
    ],
)
def test_anything_else_is_refused_with_the_forms_named(url: str) -> None:
    with pytest.raises(EngineError, match="not a Docker engine address"):
        parse_engine(url)


def test_given_hosts_win_over_docker_host_and_keep_their_order_once_each() -> None:
    assert run_engines([B, A, B], {"DOCKER_HOST": C}) == (B, A)


def test_docker_host_then_the_local_socket_are_the_defaults() -> None:
    assert run_engines([], {"DOCKER_HOST": C}) == (C,)
    assert run_engines([], {"DOCKER_HOST": ""}) == (DEFAULT_ENGINE,)
    assert run_engines([], {}) == (DEFAULT_ENGINE,)


def test_a_bad_docker_host_is_refused_too() -> None:
    with pytest.raises(EngineError):
        run_engines([], {"DOCKER_HOST": "docker.example:2375"})


def test_workers_alternate_over_the_engines_and_master_takes_the_first() -> None:
    engines = (A, B)
    assert [engine_for(f"gw{i}", engines) for i in range(5)] == [A, B, A, B, A]
    assert engine_for("master", engines) == A
    assert engine_for("gw7", (A,)) == A
    assert [engine_for(f"gw{i}", (A, B, C)) for i in range(4)] == [A, B, C, A]


def test_a_run_without_engines_is_an_error() -> None:
    with pytest.raises(EngineError):
        engine_for("gw0", ())
