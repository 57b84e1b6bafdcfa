"""Worker: runs tasks as Claude Agent SDK sessions (arrives with issue 3).

Until then it starts, heartbeats and serves /healthz and /metrics like every service.
"""

from __future__ import annotations

from koda.shared.service import Service


class WorkerService(Service):
    name = "worker"


SERVICE = WorkerService
