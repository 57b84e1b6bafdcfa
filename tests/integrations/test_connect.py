"""`koda connect SERVICE` asks for the values, checks them with a real call to the service (the
fakes here), and writes `.env` at mode 0600; `koda doctor` names what an enabled task lacks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from koda.shared.doctor import check_home
from koda.shared.home import HomeLayout
from tests.fakes.airtable import FakeAirtable
from tests.fakes.bluesky import FakeBluesky
from tests.fakes.ghost import FakeGhost
from tests.fakes.google import FakeGoogle
from tests.fakes.wordpress import FakeWordPress
from tests.fakes.x import FakeX
from tests.integrations.helpers import make_home


def koda(home: Path, *argv: str, answers: list[str]) -> subprocess.CompletedProcess[str]:
    # A new session: no controlling terminal, so the answers come from stdin as a script's would.
    return subprocess.run([sys.executable, "-m", "koda", "--home", str(home), *argv],
                          input="".join(a + "\n" for a in answers), capture_output=True, text=True,
                          timeout=60, start_new_session=True, env={**os.environ, "KODA_HOME": str(home)})


def test_connect_checks_each_service_and_writes_env_0600(tmp_path: Path) -> None:
    with FakeBluesky("me.example.com", "app-pass-word1") as pds, \
            FakeX(("ck", "cs"), ("1-at", "ats")) as x, FakeWordPress("ed", "wpwp wpwp wpwp") as wp, \
            FakeGhost() as ghost, FakeAirtable("patSecret.1", "appBase1", "Members") as airtable, \
            FakeGoogle("cid.apps", "gsecret", "1//rt") as google:
        layout = make_home(tmp_path, {"ANTHROPIC_API_KEY": "sk-ant-kept", "BLUESKY_SERVICE_URL": pds.url,
                                      "X_API_URL": x.url, "AIRTABLE_API_URL": airtable.url,
                                      "GOOGLE_TOKEN_URL": f"{google.url}/token",
                                      "YOUTUBE_API_URL": f"{google.url}/youtube/v3"})
        home = layout.root
        layout.env.chmod(0o644)

        # A wrong app password: the real 401, nothing written.
        before = layout.env.read_text()
        wrong = koda(home, "connect", "bluesky", answers=["me.example.com", "wrong-password"])
        assert wrong.returncode == 1 and "AuthenticationRequired" in wrong.stderr
        assert layout.env.read_text() == before and "wrong-password" not in wrong.stdout + wrong.stderr

        runs = {
            "bluesky": (["me.example.com", "app-pass-word1"], "signed in as me.example.com"),
            "x": (["ck", "cs", "1-at", "ats"], "signed in as @creator"),
            "wordpress": ([wp.url, "ed", "wpwp wpwp wpwp"], "who can publish posts"),
            "ghost": ([ghost.url, ghost.admin_api_key], "accepted the key"),
            "airtable": (["patSecret.1", "appBase1"], "can read the base's Members table"),
            "youtube": (["cid.apps", "gsecret", "1//rt"], "channel 'The Creator'"),
        }
        for service, (answers, said) in runs.items():
            done = koda(home, "connect", service, answers=answers)
            assert done.returncode == 0, done.stderr
            assert said in done.stdout
            for secret in answers[1:]:
                if len(secret) > 5 and not secret.startswith("http"):
                    assert secret not in done.stdout + done.stderr
        assert stat.S_IMODE(layout.env.stat().st_mode) == 0o600
        from koda.shared.secrets import read_env_file
        env = read_env_file(layout.env)
        assert env["ANTHROPIC_API_KEY"] == "sk-ant-kept" and env["BLUESKY_SERVICE_URL"] == pds.url
        assert env["WORDPRESS_APP_PASSWORD"] == "wpwp wpwp wpwp"  # quoted, spaces kept
        assert env["GHOST_ADMIN_API_KEY"] == ghost.admin_api_key and env["YOUTUBE_REFRESH_TOKEN"] == "1//rt"
        # Enter keeps a value already set.
        again = koda(home, "connect", "bluesky", answers=["", ""])
        assert again.returncode == 0 and read_env_file(layout.env)["BLUESKY_APP_PASSWORD"] == "app-pass-word1"


def test_doctor_names_what_each_enabled_task_lacks(tmp_path: Path) -> None:
    layout = make_home(tmp_path, {"ANTHROPIC_API_KEY": "sk-ant-x"})
    tasks = json.loads(layout.tasks.read_text())
    for task in tasks["tasks"]:
        task["enabled"] = task["id"] != "self-heal"
    layout.tasks.write_text(json.dumps(tasks))
    problems = {(p.field, p.message) for p in check_home(HomeLayout(layout.root), environ={})}
    text = "\n".join(m for _, m in problems)
    assert "'members-sync' runs script 'sync-members', which needs AIRTABLE_TOKEN, AIRTABLE_BASE_ID, " \
           "COMMUNITY_MEMBERS_URL" in text and "`koda connect airtable`" in text
    assert "'daily-social-post' runs script 'social-post', which none of its services is connected: " \
           "run `koda connect bluesky` or `koda connect x`" in text
    assert "'blog-post' runs script 'blog-publish'" in text
    assert "'weekly-analytics' runs script 'youtube-stats'" in text and "`koda connect youtube`" in text
    assert "'video-publish' runs script 'youtube-ready'" in text  # named by its skill
    assert "'video-publish' runs script 'publish-video'" in text  # performs its gated video.publish
    # Once connected, the problems are gone.
    layout.env.write_text("ANTHROPIC_API_KEY=sk-ant-x\nBLUESKY_HANDLE=a.b.c\nBLUESKY_APP_PASSWORD=pw-pw-pw\n"
                          "WORDPRESS_URL=https://b.example\nWORDPRESS_USER=u\nWORDPRESS_APP_PASSWORD=p p p\n"
                          "AIRTABLE_TOKEN=pat1\nAIRTABLE_BASE_ID=app1\nCOMMUNITY_MEMBERS_URL=https://c.example/m\n"
                          "GOOGLE_CLIENT_ID=c\nGOOGLE_CLIENT_SECRET=s\nYOUTUBE_REFRESH_TOKEN=r\n")
    assert check_home(HomeLayout(layout.root), environ={}) == []
