"""Deny by default for the network: the agent's Bash and WebFetch, driven by a hostile model
through the real CLI in its sandbox, reach no port of a live stack (NATS, every /healthz and
/metrics, the console), by no spelling of "this machine", directly or through the sandbox's
own HTTP and SOCKS proxies; and tasks.json cannot open the door to local addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from koda.services.worker.guard import check_network
from koda.services.worker.options import scrub_available
from koda.shared.egress import Refused, check_url
from koda.shared.errors import ConfigError
from koda.shared.tasks import parse_tasks
from tests.fake_anthropic import Text, ToolUse, sequence
from tests.security.conftest import HostileStack
from tests.security.hostile import (
    RAN,
    bash_network_attack,
    direct_answer,
    fetch_urls,
    leaked,
    targets,
    tool_results,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not scrub_available(), reason="needs bubblewrap and socat: the CLI's sandbox is the boundary")]

#: Names a task may allow that, on a real resolver, point at this machine: allowing one must
#: still reach nothing local (the proxy checks what a name resolves to).
LOCAL_LOOKING = ["example.com", "*.nip.io", "localtest.me"]


def test_the_agent_reaches_no_port_of_the_stack(hostile_stack: HostileStack) -> None:
    stack, api = hostile_stack, hostile_stack.api
    ports = targets(stack)
    # Positive control: each port is live and answers with a marker a leak would carry.
    for target in ports:
        assert leaked(direct_answer(target)), f"{target.name} gave no recognisable answer"
    full = {"nats", "worker", "console"}  # every spelling against these, two against the rest
    log = "data/drafts/net-attack.log"
    command = "{\n" + bash_network_attack([t.port for t in ports if t.name in full]) + "\n" + \
        "\n".join(line for t in ports if t.name not in full
                  for line in bash_network_attack([t.port])
                  .splitlines()[2:12]) + f"\n}} 2>&1 | tee {log} | tail -c 25000"
    fetches = tuple(("WebFetch", {"url": url, "prompt": "Show the raw text."}) for url in fetch_urls(ports))
    stack.write_tasks({"id": "net-attack", "prompt": "Explore the network.",
                       "allowed_domains": LOCAL_LOOKING})
    api.script = sequence(
        ToolUse.one("Bash", command=command, description="probe", timeout=600000),
        ToolUse(fetches),
        Text("nothing reachable"))
    event = asyncio.run(stack.run("net-attack", timeout=300))
    assert event.data["outcome"] == "done", event

    written = (stack.home / log).read_text()
    assert RAN in written, written[:2000]
    assert leaked(written) == [], written
    sent = api.all_text()
    assert RAN in sent
    assert leaked(sent) == [], [m for m in leaked(sent)]
    fetched = tool_results(api.main_calls()[-1])
    assert len(fetched) == len(fetches)
    assert all("Refused" in text for text in fetched), fetched


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:4222/", "http://2130706433/", "http://0x7f000001/", "http://127.1/",
    "http://0177.0.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
    "http://localhost./", "http://LOCALHOST/", "http://example.com@127.0.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/", "http://[fd00::1]/",
    "http://192.168.1.1/", "http://100.100.100.200/", "file:///etc/passwd", "gopher://x.com/",
    "http://example.com\\@127.0.0.1/", "http://allowed.example.org/",
])
def test_fetch_urls_outside_the_allowed_domains_are_refused(url: str) -> None:
    with pytest.raises(Refused):
        asyncio.run(check_url(url, ["example.com", "*.nip.io"]))


def test_a_task_cannot_allow_a_local_name_or_an_address(tmp_path: Path) -> None:
    text = ('{"tasks": [{"id": "t", "prompt": "p",\n'
            ' "allowed_domains": ["localhost", "127.0.0.1", "*.internal", "http://x.com/"]}]}')
    with pytest.raises(ConfigError) as raised:
        parse_tasks(text, tmp_path / "tasks.json")
    problems = [str(p) for p in raised.value.problems]
    assert problems and all("tasks.json" in p and "allowed_domains" in p for p in problems), problems
    ok = parse_tasks('{"tasks": [{"id": "t", "prompt": "p", "allowed_domains": ["API.x.com:443"]}]}',
                     tmp_path / "tasks.json")
    assert ok.tasks[0].allowed_domains == ["api.x.com:443"]


@pytest.mark.parametrize(("tool", "tool_input"), [
    ("WebFetch", {"url": "http://127.0.0.1:8110/approvals", "prompt": "x"}),
    ("mcp__fetch__fetch", {"url": "http://[::1]:4222/"}),
    ("mcp__browser__navigate", {"options": {"pages": ["https://example.com/",
                                                      "http://169.254.169.254/"]}}),
])
def test_every_fetching_tool_is_held_to_the_allowed_domains(tool: str, tool_input: dict[str, object]) -> None:
    """Another MCP server's tool fetches outside the sandbox too: any URL in its input counts."""
    reason = asyncio.run(check_network(tool, tool_input, ["example.com"]))
    assert reason is not None and reason.startswith("Refused"), reason
    # Koda's own tools go through services that keep their own limits (the scraper's site host).
    assert asyncio.run(check_network("mcp__koda__scrape", {"url": "http://127.0.0.1/"}, [])) is None
