"""The fake Claude API for the compose end-to-end test, as a process: it listens on the host side
of the test's network namespace, where the worker container reaches it.

    python3 -m tests.compose.fake_api HOST PORT LOG

The agent's first turn runs a Bash command (in the CLI's sandbox, inside the worker container);
the next turn ends the run. A run of the scale-out check (its prompt names SCALE_TASK) takes
SCALE_REPLY_SECONDS for its one reply, so runs are still in hand when the test kills a worker.
A run of the approval check (its prompt names APPROVE_TASK) proposes APPROVE_ACTION through
Koda's own tool, which a person then approves through the console.
Each request the agent loop makes is logged to LOG as one JSON line with the tool result it
carried, so the test can see what the command printed.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from tests.fake_anthropic import Call, FakeAnthropic, Reply, Text, ToolUse

#: What the Bash command prints when it ran: computed by the shell, so the text is not in the
#: request that asked for it.
MARKER_COMMAND = "echo sandbox-ran-$((6*7))"
SCALE_TASK = "e2e-scale"
SCALE_REPLY_SECONDS = 5.0
APPROVE_TASK = "e2e-approve"
APPROVE_ACTION = "e2e.publish"


def main() -> None:
    host, port, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    lock = threading.Lock()

    def script(call: Call) -> Reply:
        with lock, open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"turn": call.turn, "tool_result": call.last_tool_result()}) + "\n")
        if SCALE_TASK in call.prompt:
            time.sleep(SCALE_REPLY_SECONDS)  # ThreadingHTTPServer: other runs' calls go on
            return Text("e2e scale run done")
        if APPROVE_TASK in call.prompt:
            if call.turn == 0:
                return ToolUse.one("mcp__koda__propose_action", action=APPROVE_ACTION,
                                   args={"title": "compose e2e"}, reason="the e2e asks for it")
            return Text("e2e proposal made")
        if call.turn == 0:
            return ToolUse.one("Bash", command=MARKER_COMMAND, description="e2e probe")
        return Text("e2e manual run done")

    api = FakeAnthropic(script, host=host, port=port).start()
    print(f"fake Claude API on {api.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
