"""The worker's fixtures (scripted fake Anthropic API, a per-test HOME for the CLI, worker
settings, an event collector), for the end-to-end week."""

from tests.worker.conftest import events, fake_api, user_home, wsettings  # noqa: F401
