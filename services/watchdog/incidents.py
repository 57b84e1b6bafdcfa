"""Incidents: one per failing service (or task), opened on detection and reported once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .classify import FailureClass
from .evidence import Evidence

#: How an incident ends: healed (fixed and verified), escalated (a person must act),
#: failed (the fix did not hold), recorded (nothing to do, e.g. a transient job failure).
OUTCOMES = ("healed", "escalated", "failed", "recorded")


@dataclass
class Incident:
    """What broke, the evidence, what was done, and whether it holds."""

    key: str  # service name, or "task:<id>" / "site:<name>"
    detected_at: float  # monotonic
    failed_at: float  # wall clock of the failure itself, when known
    detected_wall: float
    failure: FailureClass = "unknown"
    reason: str = ""
    evidence: Evidence | None = None
    actions: list[str] = field(default_factory=list)
    healthy_at: float | None = None  # wall clock of the first healthy sign after the fix
    verify_at: float | None = None  # monotonic: when to check that the fix holds
    outcome: str | None = None
    old_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def time_to_detect(self) -> float:
        return max(0.0, self.detected_wall - self.failed_at)

    @property
    def time_to_healthy(self) -> float | None:
        return None if self.healthy_at is None else max(0.0, self.healthy_at - self.failed_at)

    def act(self, action: str) -> None:
        self.actions.append(f"{time.strftime('%H:%M:%S')} {action}")
