"""What `koda run --wait` prints while it waits: turns, steps and tools as the transcript grows,
the attempt (N of M, and why the last one failed), approvals waiting, a rate-limit pause and
until when. The ledger's `attempts`, `error` and `next_attempt_at`
are shown when present."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from koda.term import paint


class Progress:
    """Polled once a second; prints only what changed."""

    def __init__(self, settings: Any, bus: Any, run_id: str, task: Any) -> None:
        self.settings, self.bus, self.run_id, self.task = settings, bus, run_id, task
        self.seen = 0
        self.attempt = 1
        self.status: str | None = None
        self.pending: set[str] = set()

    def say(self, text: str) -> None:
        print(f"{paint(datetime.now().strftime('%H:%M:%S'), 'grey')}  {text}", flush=True)

    async def poll(self) -> None:
        self._transcript()
        await self._ledger()

    def _transcript(self) -> None:
        from koda.shared.runs_view import human_tokens
        from koda.shared.transcript import read_entries

        new = read_entries(self.settings.expanded_state(), self.run_id, after=self.seen)
        self.seen += len(new)
        for e in new:
            kind = e.get("kind")
            if kind == "start" and e.get("resumed"):
                self.say(f"resumed at step {e.get('step', 0) + 1}")
            elif kind == "step":
                self.say(paint(f"step {e.get('step')}", "bold"))
            elif kind == "tool":
                self.say(f"turn {e.get('turn')}: {e.get('name')}")
            elif kind == "turn":
                self.say(paint(f"turn {e.get('turn')} done ({human_tokens(e.get('input_tokens'))} in, "
                               f"{human_tokens(e.get('output_tokens'))} out)", "grey"))
            elif kind == "approval":
                self.pending.add(str(e.get("id")))
                self.say(paint(f"approval waiting: {e.get('action')} ({e.get('id')}); "
                               "`koda approvals` lists it", "yellow"))
            elif kind in ("notice", "cancel"):
                self.say(paint(str(e.get("text") or f"cancel requested by {e.get('by')}"), "yellow"))

    async def _ledger(self) -> None:
        from koda.shared.messages import LimitsRecord, RunLedgerEntry

        try:
            item = await self.bus.kv["runs"].get(self.run_id)
            entry = RunLedgerEntry.from_bytes(item.value) if item.value else None
        except Exception:
            return
        if entry is None:
            return
        most = entry.attempts or (self.task.retries.max + 1 if self.task else None)
        if entry.attempt != self.attempt:
            self.attempt = entry.attempt
            why = entry.error
            self.say(paint(f"attempt {entry.attempt}" + (f" of {most}" if most else "")
                           + (f" (the last one failed: {why})" if why else ""), "yellow"))
        if entry.status != self.status:
            self.status = entry.status
            if entry.status == "paused":
                until = None
                try:
                    raw = await self.bus.kv["limits"].get("state")
                    limits = LimitsRecord.from_bytes(raw.value) if raw.value else None
                    now = datetime.now(UTC)
                    if limits and limits.pause_until and limits.pause_until > now:
                        until = limits.pause_until
                except Exception:
                    pass
                later = entry.next_attempt_at
                if until is not None:
                    self.say(paint(f"paused by a rate limit until {until.astimezone():%H:%M} "
                                   f"({entry.error or 'rate limited'})", "yellow"))
                elif isinstance(later, datetime):
                    self.say(paint(f"waiting to retry at {later.astimezone():%H:%M:%S}", "yellow"))
                else:
                    self.say(paint(f"paused: {entry.error or 'waiting'}", "yellow"))
            elif entry.status == "awaiting_approval":
                self.say(paint(f"waiting for a person to approve {entry.approval_id} "
                               "(Discord, the console or `koda approve`)", "yellow"))
            elif entry.status == "running" and self.seen == 0:
                self.say("running")
