"""End to end: an approver's click on Discord makes the real actions service run the approved
script exactly once, however many times it is clicked."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

from koda.services.actions.service import ActionsService
from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord
from tests.scraper.helpers import serving
from tests.waits import eventually, queue_drained

from .conftest import APPROVER, Propose, RunningGateway
from .helpers import buttons

PUBLISH = """
import json, os, sys
args = json.load(sys.stdin)
with open(os.path.join(os.environ["KODA_DATA"], "published.log"), "a") as f:
    f.write(os.environ["KODA_IDEMPOTENCY_KEY"] + " " + args["title"] + "\\n")
print("published", args["title"])
"""


def install_script(home: Path) -> Path:
    scripts = home / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / "publish.py").write_text(PUBLISH)
    (scripts / "manifest.json").write_text(json.dumps({"scripts": [
        {"name": "publish", "command": ["python3", "publish.py"], "actions": ["video.publish"]}]}))
    return home / "data" / "published.log"


async def test_an_approved_click_runs_the_action_once(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose,
        gw_settings: KodaSettings, home: Path, bus: Bus) -> None:
    log = install_script(home)
    async with serving(ActionsService(gw_settings)):
        record = await propose()
        message = await fake_discord.wait_for(lambda: next(
            (m for m in fake_discord.posted("approvals") if buttons(m)), None))
        as_seen = copy.deepcopy(message)
        clicks = [await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER,
                                           as_seen) for _ in range(3)]
        await asyncio.gather(*(fake_discord.outcome(c) for c in clicks))
        await eventually(log.exists, 15)
        # Every click has been answered; once ACTIONS is empty and acknowledged, no second run
        # of anything queued so far can come.
        await queue_drained(bus, "ACTIONS")
    assert log.read_text().splitlines() == [f"approval:{record.id} Week 12"]
