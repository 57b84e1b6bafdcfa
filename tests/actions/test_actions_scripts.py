"""The actions service running real helper scripts: only declared secrets reach a script, its
output comes back redacted, a key runs once, gated work needs an approved record."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from koda.services.actions.service import ActionsService
from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.messages import ActionRecord, ActionRequest, ActionResult, ApprovalRecord, action_key
from koda.shared.settings import KodaSettings
from tests.scraper.helpers import ask, events, make_home, metric, serving

X_KEY = "xk-live-5b1c0f3e9a7d4e21b6c8"
OTHER = "other-token-8d7f6a5e4c3b"

#: Proves it holds the exact key (its digest), then tries to leak it every way it can.
X_POST = """
import hashlib, json, os, sys
key = os.environ["X_API_KEY"]
print("sha256:" + hashlib.sha256(key.encode()).hexdigest())
print("posting with key " + key)
print("OTHER_TOKEN visible:", "OTHER_TOKEN" in os.environ)
print("args:", json.load(sys.stdin))
print("auth header: Bearer " + key, file=sys.stderr)
"""

#: A script that declares nothing, looking for the key in its own and its parent's environment.
SNOOP = """
import os
print("\\n".join(f"{k}={v}" for k, v in os.environ.items()))
for pid in ("self", str(os.getppid())):
    try:
        print(open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace"))
    except OSError as exc:
        print("cannot read", pid, exc)
"""

COUNT = """
import json, os, sys, time
time.sleep(json.load(sys.stdin).get("sleep", 0))
with open(os.path.join(os.environ["KODA_DATA"], "runs.log"), "a") as f:
    f.write(os.environ["KODA_IDEMPOTENCY_KEY"] + "\\n")
print("published")
"""


def scripts(home: Path, **bodies: str) -> None:
    for name, body in bodies.items():
        (home / "scripts" / f"{name}.py").write_text(body)


def entry(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": ["python3", f"{name.replace('-', '_')}.py"], **fields}


async def test_a_script_gets_its_secret_and_nothing_else_and_the_output_is_redacted(
        settings: KodaSettings, bus: Bus) -> None:
    manifest = {"scripts": [entry("x_post", secrets=["X_API_KEY"]), entry("snoop")]}
    home = make_home(settings, {"X_API_KEY": X_KEY, "OTHER_TOKEN": OTHER},
                     {"scripts/manifest.json": manifest})
    scripts(home, x_post=X_POST, snoop=SNOOP)
    async with serving(ActionsService(settings)):
        posted = await ask(bus, "koda.actions.script.x_post", ActionRequest(
            name="script.x_post", idempotency_key="k-post", args={"text": "hello"}), ActionResult)
        snooped = await ask(bus, "koda.actions.script.snoop", ActionRequest(
            name="script.snoop", idempotency_key="k-snoop"), ActionResult)
    assert posted.ok, posted.error
    assert f"sha256:{hashlib.sha256(X_KEY.encode()).hexdigest()}" in posted.output  # it had the key
    assert "posting with key [redacted]" in posted.output
    assert "OTHER_TOKEN visible: False" in posted.output
    assert "args: {'text': 'hello'}" in posted.output
    assert snooped.ok and "KODA_HOME=" in snooped.output
    assert "cannot read" not in snooped.output  # it really read both environments
    for result in (posted, snooped):
        text = result.model_dump_json()
        assert X_KEY not in text and OTHER not in text
    assert "X_API_KEY" not in snooped.output
    # The service itself never holds .env values in its environment.
    assert "X_API_KEY" not in os.environ and all(X_KEY not in v for v in os.environ.values())
    done = await events(bus, "action.done")
    assert [e["data"]["outcome"] for e in done] == ["ok", "ok"]
    assert X_KEY not in json.dumps(done)


async def test_the_same_key_twice_runs_once_even_across_a_restart(
        settings: KodaSettings, bus: Bus) -> None:
    home = make_home(settings, {}, {"scripts/manifest.json": {"scripts": [entry("count")]}})
    scripts(home, count=COUNT)
    request = ActionRequest(name="script.count", idempotency_key="post:2026-11-24",
                            args={"sleep": 0.5})  # long enough for the second to find it running
    async with serving(ActionsService(settings)) as actions:
        # Two deliveries of one key at once, then a third after it is done.
        first, second = await asyncio.gather(
            ask(bus, "koda.actions.script.count", request, ActionResult),
            ask(bus, "koda.actions.script.count", request, ActionResult))
        third = await ask(bus, "koda.actions.script.count", request, ActionResult)
        assert metric(actions, "koda_actions_total", action="script.count", outcome="ok") == 1
        assert metric(actions, "koda_actions_total", action="script.count", outcome="duplicate") == 2
    async with serving(ActionsService(settings)):
        after_restart = await ask(bus, "koda.actions.script.count", request, ActionResult)
    results = [first, second, third, after_restart]
    assert all(r.ok and r.output.strip() == "published" for r in results)
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert (home / "data" / "runs.log").read_text().splitlines() == ["post:2026-11-24"]
    assert len(await events(bus, "action.done")) == 1


async def test_gated_work_runs_only_with_an_approved_record_for_it(
        settings: KodaSettings, bus: Bus) -> None:
    manifest = {"scripts": [entry("count", actions=["video.publish"]), entry("gated", gated=True)]}
    home = make_home(settings, {}, {"scripts/manifest.json": manifest})
    scripts(home, count=COUNT, gated=COUNT)
    store = ApprovalStore(bus)
    await store.propose(ApprovalRecord(id="a1", task="video", run_id="video.1", action="video.publish",
                                       args={"video_id": "v1"}))
    async with serving(ActionsService(settings)):
        # Made up by the model, or copied from a web page: no approval, a pending one, a wrong one.
        for n, approval in enumerate((None, "a1", "nope")):
            refused = await ask(bus, "koda.actions.video.publish", ActionRequest(
                name="video.publish", idempotency_key=f"try-{n}", approval_id=approval), ActionResult)
            assert not refused.ok and "approv" in (refused.error or "")
        gated = await ask(bus, "koda.actions.script.gated", ActionRequest(
            name="script.gated", idempotency_key="g"), ActionResult)
        assert not gated.ok and "approval" in (gated.error or "")
        assert not (home / "data" / "runs.log").exists()

        decision = await store.decide("a1", approve=True, who="creator")  # publishes the action
        assert decision.changed
        log = home / "data" / "runs.log"
        deadline = time.monotonic() + 20
        while not log.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await store.decide("a1", approve=True, who="creator")  # a second click changes nothing
        # The approval covers those arguments, once: not other ones, not under another key.
        for key, args in (("other", {"video_id": "v2"}), ("again", {"video_id": "v1"})):
            forged = await ask(bus, "koda.actions.video.publish", ActionRequest(
                name="video.publish", idempotency_key=key, approval_id="a1", args=args), ActionResult)
            assert not forged.ok and "approval a1 was given for" in (forged.error or "")
        replay = await ask(bus, "koda.actions.video.publish", ActionRequest(
            name="video.publish", idempotency_key="approval:a1", approval_id="a1",
            args={"video_id": "v2"}), ActionResult)
        assert replay.duplicate  # the approved key is done: its record answers, nothing runs
    assert log.read_text().splitlines() == ["approval:a1"]


async def test_timeouts_missing_secrets_and_a_broken_manifest_are_clear_errors(
        settings: KodaSettings, bus: Bus) -> None:
    manifest = {"scripts": [entry("slow", timeout_seconds=1), entry("needs", secrets=["NOT_SET"]),
                            {"name": "gone", "command": ["no-such-program", "x"]}]}
    home = make_home(settings, {}, {"scripts/manifest.json": manifest})
    scripts(home, slow="import time\nprint('started', flush=True)\ntime.sleep(30)\n", needs="")
    async with serving(ActionsService(settings)):
        started = time.monotonic()
        slow = await ask(bus, "koda.actions.script.slow", ActionRequest(
            name="script.slow", idempotency_key="s"), ActionResult)
        assert time.monotonic() - started < 10
        assert not slow.ok and "timed out" in (slow.error or "") and "started" in slow.output
        needs = await ask(bus, "koda.actions.script.needs", ActionRequest(
            name="script.needs", idempotency_key="n"), ActionResult)
        assert not needs.ok and "NOT_SET" in (needs.error or "")
        gone = await ask(bus, "koda.actions.script.gone", ActionRequest(
            name="script.gone", idempotency_key="g"), ActionResult)
        assert not gone.ok and "could not run 'no-such-program'" in (gone.error or "")

        (home / "scripts" / "manifest.json").write_text(
            '{"scripts": [\n  {"name": "slow", "command": ["x"], "timeout_seconds": "soon"}\n]}\n')
        broken = await ask(bus, "koda.actions.script.slow", ActionRequest(
            name="script.slow", idempotency_key="b"), ActionResult)
        assert not broken.ok
        assert "manifest.json:2: scripts[0].timeout_seconds" in (broken.error or "")


async def test_a_run_cut_short_is_recorded_as_interrupted_and_never_run_again(
        settings: KodaSettings, bus: Bus) -> None:
    slow = ("import os, time\nopen(os.path.join(os.environ['KODA_DATA'], 'started'), 'a')"
            ".write('x')\ntime.sleep(60)\n")
    home = make_home(settings, {}, {"scripts/manifest.json": {"scripts": [entry("slow")]}})
    scripts(home, slow=slow)
    started = home / "data" / "started"
    settings = settings.model_copy(update={"drain_timeout": 0.5})
    request = ActionRequest(name="script.slow", idempotency_key="cut")
    inbox = bus.nc.new_inbox()
    replies = await bus.nc.subscribe(inbox)
    async with serving(ActionsService(settings)):
        await bus.publish("koda.actions.script.slow", request.model_copy(update={"reply_subject": inbox}))
        for _ in range(200):
            if started.exists():
                break
            await asyncio.sleep(0.05)
        assert started.exists()
    # Shutdown killed the script. The redelivered message finds the record and runs nothing.
    async with serving(ActionsService(settings)):
        reply = ActionResult.from_bytes((await replies.next_msg(timeout=20)).data)
        assert not reply.ok and reply.error and reply.error.startswith("interrupted")
        again = await ask(bus, "koda.actions.script.slow", request, ActionResult)
        assert again.duplicate and not again.ok

        # A crash leaves a running claim whose instance no longer heartbeats: same outcome.
        orphan = ActionRecord(idempotency_key="crashed", name="script.slow", status="running",
                              instance="gone-1234")
        await bus.kv["actions"].put(action_key("crashed"), orphan.to_bytes())
        crashed = await ask(bus, "koda.actions.script.slow", ActionRequest(
            name="script.slow", idempotency_key="crashed"), ActionResult)
        assert not crashed.ok and "gone-1234 stopped" in (crashed.error or "")
    assert started.read_text() == "x"  # started once, never again
    await replies.unsubscribe()
