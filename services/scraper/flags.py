"""Sites that need a person: `needs_human.<site>` in the `scraper` KV bucket.

A site is flagged when its login fails even after a refresh with its recipe. The flag survives
restarts; while it is there every job for the site fails fast, and nothing logs in again (no
loop of failed logins that would lock the account). A person fixes the login (credentials in
`.env`, a captcha, a changed form) and clears it with `koda site clear <site>`, which deletes
the key.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.kv import KeyValue

from koda.shared.bus import Bus
from koda.shared.errors import BusError
from koda.shared.kv_record import KVRecords
from koda.shared.messages import SiteNeedsHuman
from koda.shared.settings import KodaSettings

PREFIX = "needs_human."


class SiteFlags:
    """Read, set and clear the needs-a-human flag of each site."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self.records = KVRecords(kv, SiteNeedsHuman)

    async def get(self, site: str) -> SiteNeedsHuman | None:
        found = await self.records.get(PREFIX + site)
        return found.value if found else None

    async def mark(self, flag: SiteNeedsHuman) -> bool:
        """Flag the site; True only for the call that set it, so the alert goes out once."""
        return await self.records.write(PREFIX + flag.site, flag, 0) is not None

    async def clear(self, site: str) -> bool:
        """Remove the flag; True if there was one."""
        if await self.get(site) is None:
            return False
        await self.kv.delete(PREFIX + site)
        return True

    async def flagged(self) -> dict[str, SiteNeedsHuman]:
        out: dict[str, SiteNeedsHuman] = {}
        for key in await self.records.keys(PREFIX):
            flag = await self.get(key.removeprefix(PREFIX))
            if flag is not None:
                out[flag.site] = flag
        return out


async def site_admin(settings: KodaSettings, action: str, site: str | None) -> tuple[int, str]:
    """`koda site list` and `koda site clear SITE`: (exit code, what to print)."""
    logging.getLogger("koda.shared.bus").setLevel(logging.CRITICAL)  # one clear line, below
    try:
        # nats-py keeps retrying inside connect() with reconnects on, so bound it from outside.
        bus = await asyncio.wait_for(Bus.connect(settings, "cli", timeout=5), timeout=6)
    except (BusError, TimeoutError):
        return 1, f"cannot reach NATS at {settings.nats_url}; is the stack up (`koda status`)?"
    try:
        flags = SiteFlags(bus.kv["scraper"])
        if action == "clear":
            assert site is not None
            if await flags.clear(site):
                return 0, f"{site}: cleared; the next job logs in again"
            return 0, f"{site}: was not flagged"
        flagged = await flags.flagged()
        lines = [f"{f.site}: needs a person since {f.at:%Y-%m-%d %H:%M} UTC: {f.reason}"
                 for f in flagged.values()]
        return 0, "\n".join(lines) or "no site needs a person"
    finally:
        await bus.close()
