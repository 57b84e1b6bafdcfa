"""Actions: runs helper scripts and approved actions with their credentials (issue 5).

Until then it starts, heartbeats and serves /healthz and /metrics like every service.
"""

from __future__ import annotations

from koda.shared.service import Service


class ActionsService(Service):
    name = "actions"


SERVICE = ActionsService
