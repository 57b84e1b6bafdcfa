"""The worker fixtures (fake API, home, settings, event collector) serve the quota tests too."""

from tests.worker.conftest import events, fake_api, user_home, wsettings

__all__ = ["events", "fake_api", "user_home", "wsettings"]
