"""What the Discord bot and the console share: the bus, the home, the approval desk, redaction."""

from __future__ import annotations

from dataclasses import dataclass

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.secrets import Redactor
from koda.shared.settings import KodaSettings

from .desk import ApprovalDesk


@dataclass
class GatewayContext:
    settings: KodaSettings
    bus: Bus
    home: HomeLayout
    desk: ApprovalDesk
    redact: Redactor
