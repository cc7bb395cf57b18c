"""The README's lists of events, codes and commands are the code's, exactly.

Each list is read from its paragraph of README.md; a name missing on either side fails, so the
documentation cannot drift from `peer/events.py`, `peer/errors.py` and `peer/console.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

from peer.console import COMMANDS
from peer.errors import COMMAND_CODES, OUTCOME_CODES
from peer.events import EVENTS

README = (Path(__file__).parents[1] / "README.md").read_text()


def paragraph(starts: str) -> str:
    """The README paragraph that begins with `starts` (up to the next blank line)."""
    match = re.search(rf"^{re.escape(starts)}.*?(?=\n\n)", README, re.M | re.S)
    assert match, f"README has no paragraph starting {starts!r}"
    return match.group(0)


def listed(starts: str) -> set[str]:
    """The backticked names of the list after the paragraph's first colon, up to its end
    (a period right after a backtick); asides in parentheses and quotes are not names."""
    text = paragraph(starts)
    text = text[text.index(":") + 1 :]
    text = text[: text.index("`.") + 1]
    text = re.sub(r"\([^()]*\)", "", text)
    return set(re.findall(r"`([a-z][a-z-]+)`", text))


def test_event_list_matches_the_code() -> None:
    assert listed("Events:") - EVENTS == set(), "listed in the README but never emitted"
    assert EVENTS - listed("Events:") == set(), "emitted but missing from the README"


def test_refusal_codes_match_the_code() -> None:
    assert listed("Every command may carry an `id`") == COMMAND_CODES


def test_outcome_codes_match_the_code() -> None:
    assert listed("Outcome codes,") == OUTCOME_CODES


def test_command_table_matches_the_code() -> None:
    table = re.findall(r"^\| `([a-z-]+)`(?: / `([a-z-]+)`)? \|", README, re.M)
    listed = {name for row in table for name in row if name}
    assert listed == set(COMMANDS)
