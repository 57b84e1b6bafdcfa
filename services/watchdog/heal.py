"""The fixes the watchdog may apply by itself. Config and code changes are never among them:
those are proposed to a person."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from koda.shared.controls import pause_task
from koda.shared.errors import NoReply
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest, ScrapeRequest, ScrapeResult, new_run_id
from koda.shared.scripts import ScriptManifest
from koda.shared.tasks import TasksFile

if TYPE_CHECKING:
    from koda.shared.bus import Bus

SELF_HEAL_TASK = "self-heal"


def dependent_tasks(service: str, tasks: TasksFile | None, layout: HomeLayout) -> list[str]:
    """Tasks that cannot run while `service` is down: held during a crash loop. `tasks` is
    tasks.json or its last good version (None: there never was one)."""
    if tasks is None:
        return []
    manifest: ScriptManifest | None = None
    try:
        manifest = ScriptManifest.model_validate(json.loads(layout.scripts_manifest.read_text()))
    except (OSError, ValueError):
        manifest = None
    out = []
    for task in tasks.tasks:
        if not task.enabled:
            continue
        if service == "worker" and not task.script:
            out.append(task.id)
        elif service == "actions" and task.script:
            out.append(task.id)
        elif service == "scraper" and task.script and manifest:
            spec = manifest.get(task.script)
            if spec is not None and spec.site:
                out.append(task.id)
    return out


async def hold_tasks(bus: Bus, tasks: list[str], reason: str) -> list[str]:
    """Pause tasks (`pause.<task>` in the scheduler KV) until a person resumes them."""
    held = []
    for task in tasks:
        await pause_task(bus, task, "watchdog", reason, text=f"{task} held: {reason}")
        held.append(task)
    return held


async def refresh_cookies(bus: Bus, site: str, timeout: float = 120.0) -> ScrapeResult:
    """Ask the scraper to log in to `site` again; returns its answer (ok or not)."""
    job = f"watchdog-refresh-{site}-{int(time.time() * 1000)}"
    try:
        return await bus.request(f"koda.scrape.{site}",
                                 ScrapeRequest(site=site, job_id=job, refresh=True), ScrapeResult,
                                 timeout=timeout)
    except NoReply as exc:
        return ScrapeResult(site=site, job_id=job, ok=False, error=str(exc))


async def queue_self_heal(bus: Bus, summary: str, evidence: dict[str, Any]) -> str:
    """Hand an unclassified incident to the agent's self-heal skill; evidence is untrusted."""
    now = datetime.now(UTC)
    run_id = new_run_id(SELF_HEAL_TASK, "watchdog", now)
    request = RunRequest(
        task=SELF_HEAL_TASK, run_id=run_id, scheduled_for=now, trigger="watchdog",
        requested_by="watchdog",
        prompt=f"Follow the self-heal skill for this incident: {summary}",
        context={"untrusted_evidence": evidence},
    )
    await bus.publish(f"koda.runs.{SELF_HEAL_TASK}", request, msg_id=run_id)
    return run_id
