"""Fault tests reuse the worker's fixtures: the fake API, a home, events, a worker process."""

from tests.worker.conftest import events, fake_api, user_home, wsettings

__all__ = ["events", "fake_api", "user_home", "wsettings"]
