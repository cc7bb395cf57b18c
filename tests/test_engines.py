"""Which engines a run uses and which engine each xdist worker gets (harness.backends.engines)."""

from __future__ import annotations

import execnet
import pytest

from harness.backends.engines import (
    DEFAULT_ENGINE,
    ENGINE_ENV,
    EngineError,
    bind_workers,
    parse_engine,
    run_engines,
    worker_engine,
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


def test_workers_alternate_over_the_engines_in_their_xdist_specs() -> None:
    assert bind_workers(["popen"] * 5, (A, B)) == [
        f"popen//env:{ENGINE_ENV}={i}" for i in (0, 1, 0, 1, 0)
    ]
    assert bind_workers(["4*popen"], (A, B, C)) == [
        f"popen//env:{ENGINE_ENV}={i}" for i in (0, 1, 2, 0)
    ]
    assert bind_workers(["popen"], (A,)) == [f"popen//env:{ENGINE_ENV}=0"]


def test_a_spec_that_names_its_engine_keeps_it() -> None:
    given = [f"3*popen//env:{ENGINE_ENV}=1", "popen//nice=5"]
    assert bind_workers(given, (A, B)) == [
        *[f"popen//env:{ENGINE_ENV}=1"] * 3,
        f"popen//nice=5//env:{ENGINE_ENV}=1",
    ]
    with pytest.raises(EngineError, match="names no engine"):
        bind_workers([f"popen//env:{ENGINE_ENV}=2"], (A, B))


def test_xdist_sets_the_bound_engine_in_the_worker_environment() -> None:
    """What execnet makes of a bound spec: the worker's environment gets the index. A URL
    cannot travel there itself: every engine URL holds "//", which XSpec splits on."""
    (spec,) = bind_workers([f"popen//env:{ENGINE_ENV}=1"], (A, B))
    assert execnet.XSpec(spec).env == {ENGINE_ENV: "1"}
    assert execnet.XSpec(f"popen//env:DOCKER_HOST={A}").env != {"DOCKER_HOST": A}


def test_a_worker_keeps_to_the_engine_its_environment_names() -> None:
    assert worker_engine({ENGINE_ENV: "1"}, (A, B)) == B
    assert worker_engine({}, (A, B)) == A  # undistributed, or no engine bound: the first
    for bad in ("2", "-1", "x", ""):
        with pytest.raises(EngineError, match="names no engine"):
            worker_engine({ENGINE_ENV: bad}, (A, B))


def test_a_run_without_engines_is_an_error() -> None:
    with pytest.raises(EngineError):
        bind_workers(["popen"], ())
    with pytest.raises(EngineError):
        worker_engine({}, ())
