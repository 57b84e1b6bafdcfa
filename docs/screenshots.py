"""Regenerate the console screenshots in docs/console/ (used by docs/console.md).

    .venv/bin/python docs/screenshots.py

Starts a throwaway NATS server and a gateway on free ports with a temporary home seeded with a
week of made-up runs (tests/gateway/console_seed.py), then photographs every page in Debian's
Chromium at desktop and phone width. Nothing outside a temporary folder is touched.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "console"
CHROMIUM = "/usr/lib/chromium/chromium"
TOKEN = "screenshot-token-0000000000"


async def main() -> None:
    from playwright.async_api import async_playwright
    from pydantic import SecretStr

    from koda.shared.bus import Bus
    from koda.shared.settings import KodaSettings
    from tests.gateway.conftest import RunningGateway
    from tests.gateway.console_seed import heartbeats, seed
    from tests.natsserver import NatsServer, free_port_block

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nats = NatsServer(root / "nats")
        nats.start()
        try:
            settings = KodaSettings(
                home=root / "home", state_dir=root / "state", nats_url=nats.url,
                port_base=free_port_block(7) - 1, heartbeat_ttl=120.0, console_port=free_port_block(1),
                console_token=SecretStr(TOKEN), spend_cap_day_usd=2.0, spend_cap_month_usd=40.0)
            bus = await Bus.connect(settings, "docs", timeout=10)
            seeded = await seed(settings, bus)
            await heartbeats(bus, settings)
            gateway = RunningGateway(settings)
            await gateway.start(wait_discord=False)
            url = f"http://127.0.0.1:{settings.console_listen_port()}"
            shots = [("services", "/"), ("tasks", "/tasks"), ("runs", "/runs"),
                     ("run", f"/runs/{seeded.done_run}"), ("run-live", f"/runs/{seeded.live_run}"),
                     ("approvals", "/approvals"), ("costs", "/costs"), ("events", "/events")]
            phone = [("runs", "/runs"), ("run", f"/runs/{seeded.done_run}"),
                     ("approvals", "/approvals"), ("tasks", "/tasks")]
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                       args=["--no-sandbox", "--disable-gpu"])
                    for name, size, pages in (("", (1280, 860), shots),
                                              ("-phone", (390, 844), phone)):
                        context = await browser.new_context(
                            viewport={"width": size[0], "height": size[1]},
                            device_scale_factor=1 if not name else 2)
                        page = await context.new_page()
                        await page.goto(f"{url}/login")
                        await page.fill("input[name=token]", TOKEN)
                        await page.click("button[type=submit]")
                        await page.wait_for_url(f"{url}/")
                        for shot, path in pages:
                            await page.goto(url + path)
                            await page.screenshot(path=str(OUT / f"{shot}{name}.png"), full_page=True)
                            print(f"docs/console/{shot}{name}.png")
                        await context.close()
                    await browser.close()
            finally:
                await gateway.stop()
                await bus.close()
        finally:
            nats.stop()


if __name__ == "__main__":
    asyncio.run(main())
