"""Command-line parsing: every bad line gets a clear, stable error code."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peer.commands import CommandError, parse_command
from peer.console import SPECS


def test_download_defaults_to_install() -> None:
    cmd = parse_command('{"cmd":"download","game_id":"bfbc2","id":7}', SPECS)
    assert cmd.args == {"game_id": "bfbc2", "install": True} and cmd.request_id == 7


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("not json", "bad-json"),
        ("[1,2]", "bad-command"),
        ('{"game_id":"x"}', "bad-command"),
        ('{"cmd":"fly"}', "unknown-command"),
        ('{"cmd":"download"}', "missing-field"),
        ('{"cmd":"download","game_id":5}', "bad-field"),
        ('{"cmd":"download","game_id":"x","install":"no"}', "bad-field"),
        ('{"cmd":"download","game_id":"x","instal":false}', "unknown-field"),
        ('{"cmd":"wait-peers","count":true}', "bad-field"),
        ('{"cmd":"wait-peers","timeout_s":NaN}', "bad-field"),
        ('{"cmd":"status","id":[1]}', "bad-field"),
        ('{"cmd":"play","game_id":"css","username":"a\\nb","language":"en"}', "bad-field"),
        ('{"cmd":"play","game_id":"css","username":"","language":"en"}', "bad-field"),
    ],
)
def test_bad_lines_get_stable_codes(line: str, code: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_command(line, SPECS)
    assert err.value.code == code
    assert err.value.message


def test_error_echoes_cmd_and_id_when_readable() -> None:
    with pytest.raises(CommandError) as err:
        parse_command('{"cmd":"download","id":"abc"}', SPECS)
    assert (err.value.cmd, err.value.request_id) == ("download", "abc")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
def test_parse_never_crashes(line: str) -> None:
    try:
        parse_command(line, SPECS)
    except CommandError as exc:
        assert exc.code and exc.message


@pytest.mark.parametrize(
    "line",
    ['{"cmd":"status","id":' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000],
    ids=["integer-past-the-digit-cap", "deep-nesting"],
)
def test_lines_past_the_decoder_limits_are_bad_json(line: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_command(line, SPECS)
    assert err.value.code == "bad-json"
