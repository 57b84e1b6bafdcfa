"""Only the gateway decides an approval: a process holding the worker's NATS credentials (what
a prompt-injected agent would need to steal, and still not enough) writes an "approved" record
into the approvals bucket, with no signature or its own, and asks for the gated script: nothing
runs and a refusal event says why. A person's decision through the gateway runs it once."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from koda.shared import approval_keys
from koda.shared.approvals import ApprovalStore, signed_fields
from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, ApprovalRecord, Event
from tests.security.conftest import connect_as
from tests.stack import Stack

pytestmark = pytest.mark.slow

PUBLISH = """
import os, pathlib
log = pathlib.Path(os.environ["KODA_DATA"]) / "published.log"
with log.open("a") as out:
    out.write(os.environ["KODA_IDEMPOTENCY_KEY"] + "\\n")
print("published")
"""


def install_gated_script(stack: Stack) -> None:
    scripts = stack.home / "scripts"
    (scripts / "publish.py").write_text(PUBLISH)
    (scripts / "manifest.json").write_text(json.dumps({"scripts": [
        {"name": "publish", "command": ["python3", "publish.py"], "gated": True,
         "actions": ["video.publish"]}]}))


def published(stack: Stack) -> list[str]:
    log = stack.home / "data" / "published.log"
    return log.read_text().split() if log.exists() else []


async def action_done(nc: Any, key: str, timeout: float = 60) -> Event:
    """The `action.done` event for one idempotency key: the actions service's answer."""
    sub = await nc.subscribe("koda.events.action.done")
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = Event.from_bytes((await sub.next_msg(timeout=timeout)).data)
                if event.data.get("idempotency_key") == key:
                    return event
    finally:
        await sub.unsubscribe()


def record(approval_id: str, action: str = "script.publish", **fields: Any) -> ApprovalRecord:
    return ApprovalRecord(id=approval_id, task="publish-video", run_id="publish-video.m1",
                          action=action, args={"video_id": "v1"}, **fields)


async def test_the_workers_credentials_cannot_approve_or_run_gated_work(stack: Stack) -> None:
    install_gated_script(stack)
    nc, violations = await connect_as(stack, "worker")
    js = nc.jetstream()
    approvals = await js.key_value("approvals")
    attacker_key, _ = approval_keys.generate()
    now = datetime.now(UTC)
    try:
        forgeries = {
            "unsigned": None,
            "self-signed": "own",
            "garbage-signature": "A" * 86 + "==",
        }
        for name, how in forgeries.items():
            approval_id = f"publish-video.m1.{name}"
            pending = record(approval_id, idempotency_key=f"approval:{approval_id}")
            await approvals.create(approval_id, pending.to_bytes())  # the worker may propose...
            forged = pending.model_copy(update={"status": "approved", "decided_by": "111",
                                                "decided_at": now})
            if how == "own":
                forged.signature = approval_keys.sign(signed_fields(forged), attacker_key)
            elif how is not None:
                forged.signature = how
            await approvals.put(approval_id, forged.to_bytes())  # ...and so write the bucket
            key = f"approval:{approval_id}"
            answer = asyncio.ensure_future(action_done(nc, key))
            await asyncio.sleep(0.2)  # the subscription is registered before the request
            request = ActionRequest(name="script.publish", idempotency_key=key,
                                    approval_id=approval_id, args={"video_id": "v1"})
            await js.publish("koda.actions.script.publish", request.to_bytes())
            event = await answer
            assert not event.data["ok"] and event.data["outcome"] == "forged", event
            assert "signature" in event.data["error"], event

        # Publishing the action kind itself, as the gateway would: NATS refuses the worker.
        await nc.publish("koda.actions.video.publish", ActionRequest(
            name="video.publish", idempotency_key="approval:publish-video.m1.unsigned",
            approval_id="publish-video.m1.unsigned", args={"video_id": "v1"}).to_bytes())
        assert "koda.actions.video.publish" in await violations.wait()
        # And the worker's own code path cannot decide: it holds no signing key.
        bus = await Bus.connect(stack.settings.model_copy(update=stack.credentials("worker")),
                                "worker")
        try:
            decision = await ApprovalStore(bus).decide("publish-video.m1.unsigned", True, "111")
            assert not decision.changed and "only the gateway" in decision.reason
        finally:
            await bus.close()
        assert published(stack) == []

        # A person approves a real proposal in the console: it runs, once, under its key.
        real = record("publish-video.m1.real", action="video.publish")
        await approvals.create(real.id, real.model_copy(
            update={"idempotency_key": f"approval:{real.id}"}).to_bytes())
        answer = asyncio.ensure_future(action_done(nc, f"approval:{real.id}"))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(console_approve, stack, real.id)
        event = await answer
        assert event.data["ok"], event
    finally:
        await nc.close()
    assert published(stack) == [f"approval:{real.id}"]


def console_approve(stack: Stack, approval_id: str) -> None:
    token = (stack.state / "console-token").read_text().strip()
    port = stack.settings.console_listen_port()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/approvals/{approval_id}/approve",
                                     method="POST", headers={"Authorization": f"Bearer {token}"},
                                     data=b"")
    # The console answers a decision with a redirect back to the list.
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 303), response.status
