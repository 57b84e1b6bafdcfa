"""Running a Koda service inside the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

from koda.shared.service import Service

S = TypeVar("S", bound=Service)


@asynccontextmanager
async def serving(service: S, timeout: float = 10.0) -> AsyncIterator[S]:
    """Run `service` until the block ends, then stop it cleanly (it must exit 0).

    The block starts once the service has finished its setup, or at once with its error if it
    could not start.
    """
    task = asyncio.create_task(service.serve(install_signals=False))
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()
    try:
        yield service
    finally:
        service.stopping.set()
        assert await asyncio.wait_for(task, timeout=30) == 0
