"""`koda doctor` finds what would fail later: a gated action nobody handles, a script's missing
secret, settings put where Koda does not read them; and the one settings file is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from koda.shared.settings import KodaSettings
from tests.test_home import koda


def _enable(home: Path, *ids: str) -> None:
    path = home / "tasks.json"
    data = json.loads(path.read_text())
    for task in data["tasks"]:
        if task["id"] in ids:
            task["enabled"] = True
    path.write_text(json.dumps(data, indent=2))


def test_doctor_flags_gated_kinds_without_a_handler_and_missing_script_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    koda(home, "init")
    env = {"ANTHROPIC_API_KEY": "sk-test-key-123", "KODA_CONFIG_FILE": str(tmp_path / "none.env")}
    assert koda(home, "doctor", **env).returncode == 0  # all starter tasks are off: nothing to say
    _enable(home, "daily-social-post", "video-publish", "members-sync")
    # A gated kind no script handles (the starter kinds all have one now).
    data = json.loads((home / "tasks.json").read_text())
    post = next(t for t in data["tasks"] if t["id"] == "daily-social-post")
    post["gated"] = ["newsletter.send"]
    (home / "tasks.json").write_text(json.dumps(data, indent=2))
    result = koda(home, "doctor", **env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    kind = next(line for line in lines if "'newsletter.send'" in line)
    assert kind.startswith(f"{home / 'tasks.json'}:") and ".gated[0]:" in kind
    assert "no script in scripts/manifest.json lists action 'newsletter.send'" in kind
    secret = [line for line in lines if "YOUTUBE_REFRESH_TOKEN" in line]
    assert secret and "video-publish" in secret[0] and "koda connect youtube" in secret[0]
    assert any("AIRTABLE_TOKEN" in line and "members-sync" in line for line in lines)
    assert len(secret) == len({line for line in secret})  # each reported once, by one check
    (home / ".env").write_text("GOOGLE_CLIENT_ID=i\nGOOGLE_CLIENT_SECRET=s\nYOUTUBE_REFRESH_TOKEN=r\n"
                               "AIRTABLE_TOKEN=c\nAIRTABLE_BASE_ID=b\nCOMMUNITY_MEMBERS_URL=u\n")
    again = koda(home, "doctor", **env).stdout
    assert "YOUTUBE_REFRESH_TOKEN" not in again and "AIRTABLE_TOKEN" not in again
    assert "newsletter.send" in again


def test_doctor_flags_settings_where_they_are_not_read_and_typos(tmp_path: Path) -> None:
    home = tmp_path / "home"
    koda(home, "init")
    (home / ".env").write_text("ANTHROPIC_API_KEY=sk-test\nKODA_DISCORD_TOKEN=abc\n")
    config = tmp_path / "koda.env"
    config.write_text("KODA_DISCORD_GUILD=1\nKODA_DISCROD_OWNER=2\n")
    result = koda(home, "doctor", KODA_CONFIG_FILE=str(config))
    assert result.returncode == 1
    assert (f"{home / '.env'}:2: KODA_DISCORD_TOKEN: Koda does not read KODA_* settings from this "
            f"file; put it in {config}") in result.stdout
    assert f"{config}:2: KODA_DISCROD_OWNER: not a Koda setting" in result.stdout
    assert "KODA_DISCORD_GUILD" not in result.stdout


def test_every_koda_process_reads_the_one_settings_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "koda" / "koda.env"
    config.parent.mkdir()
    config.write_text("KODA_DISCORD_TOKEN=from-the-file\nKODA_PORT_BASE=9300\n")
    monkeypatch.delenv("KODA_CONFIG_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("KODA_PORT_BASE", "9400")  # the environment wins
    settings = KodaSettings()
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == "from-the-file"
    assert settings.port_base == 9400
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("KODA_CHAT_TASK=from-cwd\n")  # not a place Koda reads
    assert KodaSettings().chat_task == "chat"
