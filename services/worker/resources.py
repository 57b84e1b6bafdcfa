"""Resource exhaustion: a full disk, a read-only home, a file-size or memory limit.

None of these heals by delivering the run again, so a run that meets one ends `failed` at once
with the reason (`cause: resource`), and the operator gets one alert per cause, not one per run.
"""

from __future__ import annotations

import errno
import time

#: errno -> the cause named in the run's error and the alert's `data.cause`.
CAUSES = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EFBIG: "file_too_large",
    errno.EROFS: "read_only",
    errno.ENOMEM: "out_of_memory",
}
#: An alert for one cause is repeated at most this often (per worker).
ALERT_EVERY_S = 3600.0


def exhaustion(exc: BaseException) -> str | None:
    """The cause if `exc` (or what it wraps) is resource exhaustion, else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MemoryError):
            return "out_of_memory"
        if isinstance(seen, OSError) and seen.errno in CAUSES:
            return CAUSES[seen.errno]
        seen = seen.__cause__ or seen.__context__
    return None


class AlertGate:
    """Lets the first alert of each cause through, then one per ALERT_EVERY_S."""

    def __init__(self, every: float = ALERT_EVERY_S) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def open(self, cause: str) -> bool:
        now = time.monotonic()
        last = self._last.get(cause)
        if last is not None and now - last < self.every:
            return False
        self._last[cause] = now
        return True
