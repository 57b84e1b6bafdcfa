"""The one Chromium the scraper drives through Playwright, started on demand and closed when idle.

Playwright is imported at the first job, not at start: an idle scraper costs no browser memory
(the whole idle stack must stay under 300 MB) and restarts in a fraction of a second. Each job
gets its own browser context, loaded from and saved to the site's cookie jar.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: This machine's network is closed and the browser runs unattended: no sandbox helper (it runs
#: as the service user in a container), no GPU, and none of Chromium's calls home.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


class Browser:
    """A lazily launched Chromium; `context()` hands out isolated contexts."""

    def __init__(self, executable: Path, idle_close: float) -> None:
        self.executable = executable
        self.idle_close = idle_close
        self._playwright: Any = None
        self._browser: Any = None
        self._lock = asyncio.Lock()
        self._active = 0
        self._last_used = time.monotonic()

    @property
    def running(self) -> bool:
        return self._browser is not None

    async def _ensure(self) -> Any:
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                if not self.executable.exists():
                    raise FileNotFoundError(
                        f"no Chromium at {self.executable}; set KODA_CHROMIUM_PATH")
                from playwright.async_api import async_playwright

                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=str(self.executable), args=LAUNCH_ARGS, headless=True)
                log.info("browser started", extra={"executable": str(self.executable)})
            return self._browser

    @asynccontextmanager
    async def context(self, storage_state: dict[str, Any] | None) -> AsyncIterator[Any]:
        """A fresh browser context with the given cookies; closed when the block ends."""
        browser = await self._ensure()
        self._active += 1
        context = await browser.new_context(storage_state=storage_state)
        try:
            yield context
        finally:
            self._active -= 1
            self._last_used = time.monotonic()
            try:
                await context.close()
            except Exception:
                pass

    async def close_if_idle(self) -> bool:
        """Close Chromium after `idle_close` seconds without a job; True if it closed."""
        idle = time.monotonic() - self._last_used
        if self._browser is None or self._active or idle < self.idle_close:
            return False
        await self.close()
        log.info("browser closed after being idle", extra={"idle_s": round(idle)})
        return True

    async def close(self) -> None:
        async with self._lock:
            browser, playwright = self._browser, self._playwright
            self._browser = self._playwright = None
        for closer in (browser, playwright):
            if closer is None:
                continue
            try:
                await (closer.close() if closer is browser else closer.stop())
            except Exception:
                log.debug("closing the browser failed", exc_info=True)
