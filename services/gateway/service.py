"""Gateway: the Discord bot and the web console (issue 4).

Until then it starts, heartbeats and serves /healthz and /metrics like every service.
"""

from __future__ import annotations

from koda.shared.service import Service


class GatewayService(Service):
    name = "gateway"


SERVICE = GatewayService
