"""S38 First-play launch-setting stamping, on a real RAR installed with `unrar`."""

import pytest

from harness.lab import Lab

INI = "css/local/engine/bin/win64/steam_settings/SmartSteamEmu.ini"
ACCOUNT = "css/local/profiles/local/account_name.txt"
LANGUAGE = "css/local/profiles/local/language.txt"
MARKER = "games/css/launch_settings_applied"


@pytest.mark.scenario("S38")
def test_s38_first_play_launch_setting_stamping(lab: Lab) -> None:
    peer = lab.peer("player", fixture="fixture-persona", args=("--unrar", lab.backend.unrar))

    def marker_exists() -> bool:
        return peer.run("test", "-e", peer.process.state_path(MARKER))[0] == 0

    mark = peer.mark()
    peer.send("install", game_id="css")
    peer.expect("install-finished", where={"game_id": "css"}, since=mark)
    assert not marker_exists()
    stub_ini = peer.read(INI)
    assert b"PersonaName = stubplayer\r\n" in stub_ini
    assert (peer.read(ACCOUNT), peer.read(LANGUAGE)) == (b"stubaccount", b"stublanguage")

    first = peer.send("play", game_id="css", username="neo", language="german")
    assert first == {
        "already_applied": False,
        "account_name_written": True,
        "language_written": True,
        "persona_name_written": True,
    }
    assert peer.read(INI) == stub_ini.replace(
        b"PersonaName = stubplayer\r\n", b"PersonaName = neo\r\n"
    )
    assert (peer.read(ACCOUNT), peer.read(LANGUAGE)) == (b"neo", b"german")
    assert marker_exists()

    peer.write(ACCOUNT, b"reset-by-someone-else")
    second = peer.send("play", game_id="css", username="trinity", language="english")
    assert second == {
        "already_applied": True,
        "account_name_written": False,
        "language_written": False,
        "persona_name_written": False,
    }
    assert peer.read(ACCOUNT) == b"reset-by-someone-else"
    assert b"PersonaName = neo\r\n" in peer.read(INI)

    # A reinstall makes a fresh local/, so the next play stamps again.
    mark = peer.mark()
    peer.send("install", game_id="css")
    peer.expect("install-finished", where={"game_id": "css"}, since=mark)
    assert not marker_exists()
    assert (
        peer.send("play", game_id="css", username="neo", language="german")["already_applied"]
        is False
    )
