# A private Docker engine for the compose end-to-end test (sourced by tests/compose/e2e.sh).
#
# dockerd runs in a network namespace of its own, with its own data root, exec root and socket:
# it never touches the host's default socket, ports or iptables chains. A veth pair plus NAT gives
# image builds a way out to the package registries; containers reach the host side of the veth
# (the test's fake Claude API) and nothing else of the host.

E2E_NETNS=${E2E_NETNS:-koda-e2e-$$}
# A /30 per run: the pid keeps concurrent runs on the same machine apart.
E2E_SUBNET_ID=$(( ($$ % 250) + 1 ))
E2E_HOST_IP=10.231.${E2E_SUBNET_ID}.1
E2E_NS_IP=10.231.${E2E_SUBNET_ID}.2
E2E_VETH=ke2e$$
E2E_RUN_DIR=${E2E_CACHE}/run-$$
export DOCKER_HOST=unix://${E2E_RUN_DIR}/docker.sock
# The engine's own bridge, away from the host's and the default 172.17/16.
E2E_BRIDGE_CIDR=${E2E_BRIDGE_CIDR:-10.232.${E2E_SUBNET_ID}.1/24}
E2E_POOL=${E2E_POOL:-10.233.0.0/16}

log() { printf '%s [e2e] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Retries only around infrastructure set-up (package downloads, the engine's start): a failing
# Koda check is never retried.
retry() {
    local tries=$1; shift
    local i
    for ((i = 1; i <= tries; i++)); do
        if "$@"; then return 0; fi
        log "attempt $i/$tries failed: $*"
        sleep $((i * 5))
    done
    return 1
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nsenter >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        retry 3 apt-get update -qq || die "apt-get update"
        retry 3 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]}"
    fi
}

engine_up() {
    mkdir -p "$E2E_RUN_DIR" "$E2E_CACHE/docker"
    ip netns add "$E2E_NETNS" || die "ip netns add $E2E_NETNS"
    ip link add "$E2E_VETH" type veth peer name "${E2E_VETH}n"
    ip link set "${E2E_VETH}n" netns "$E2E_NETNS"
    ip addr add "$E2E_HOST_IP/30" dev "$E2E_VETH"
    ip link set "$E2E_VETH" up
    nsenter --net="/run/netns/$E2E_NETNS" sh -c "
        ip link set lo up
        ip addr add $E2E_NS_IP/30 dev ${E2E_VETH}n
        ip link set ${E2E_VETH}n up
        ip route add default via $E2E_HOST_IP"
    # Builds reach the registries through the host: NAT this /30 only, in rules tagged so that
    # cleanup removes exactly these.
    E2E_FORWARD_WAS=$(sysctl -n net.ipv4.ip_forward)
    sysctl -qw net.ipv4.ip_forward=1
    iptables -t nat -A POSTROUTING -s "$E2E_NS_IP/32" ! -o "$E2E_VETH" -j MASQUERADE \
        -m comment --comment "$E2E_NETNS"
    iptables -A FORWARD -i "$E2E_VETH" -j ACCEPT -m comment --comment "$E2E_NETNS"
    iptables -A FORWARD -o "$E2E_VETH" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT \
        -m comment --comment "$E2E_NETNS"
    # Containers' traffic leaves the namespace through the engine's own NAT, so the host sees
    # only $E2E_NS_IP. `ip netns exec` would remount /sys and break dockerd's cgroup set-up.
    log "starting dockerd in netns $E2E_NETNS (data root $E2E_CACHE/docker)"
    nsenter --net="/run/netns/$E2E_NETNS" dockerd \
        --data-root "$E2E_CACHE/docker" \
        --exec-root "$E2E_RUN_DIR/exec" \
        --pidfile "$E2E_RUN_DIR/dockerd.pid" \
        --host "$DOCKER_HOST" \
        --bip "$E2E_BRIDGE_CIDR" \
        --default-address-pool "base=$E2E_POOL,size=24" \
        >"$E2E_RUN_DIR/dockerd.log" 2>&1 9>&- &
    E2E_DOCKERD_PID=$!
    local i
    for ((i = 0; i < 120; i++)); do
        if docker version >/dev/null 2>&1; then return 0; fi
        kill -0 "$E2E_DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 30 "$E2E_RUN_DIR/dockerd.log" >&2
    log "dockerd did not answer on $DOCKER_HOST"
    return 1
}

# Starts the engine; one more try after a failed start, from a clean namespace.
engine_up_retrying() {
    engine_up && return 0
    engine_down
    mkdir -p "$E2E_RUN_DIR"
    sleep 5
    engine_up || die "the Docker engine did not start (log above)"
}

engine_down() {
    if [[ -n ${E2E_DOCKERD_PID:-} ]] && kill -0 "$E2E_DOCKERD_PID" 2>/dev/null; then
        kill "$E2E_DOCKERD_PID"
        local i
        for ((i = 0; i < 60; i++)); do
            kill -0 "$E2E_DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$E2E_DOCKERD_PID" 2>/dev/null || true
    fi
    # Containerd shims outlive a killed dockerd; they hold the namespace's mounts.
    if [[ -d $E2E_RUN_DIR/exec ]]; then
        umount -R "$E2E_RUN_DIR/exec" 2>/dev/null || true
    fi
    local rule
    for table in nat filter; do
        while rule=$(iptables -t "$table" -S | grep -m1 -- "--comment $E2E_NETNS"); do
            # shellcheck disable=SC2086  # the rule's words, as iptables printed them
            iptables -t "$table" ${rule/-A /-D } || break
        done
    done
    if [[ -n ${E2E_FORWARD_WAS:-} ]] && \
       ! iptables -S FORWARD | grep -q -- "--comment koda-e2e-"; then
        sysctl -qw net.ipv4.ip_forward="$E2E_FORWARD_WAS"
    fi
    ip link del "$E2E_VETH" 2>/dev/null || true
    ip netns del "$E2E_NETNS" 2>/dev/null || true
    rm -rf "$E2E_RUN_DIR"
}

# The Dockerfile's base image, made from Debian's packages: Docker Hub is not reachable here.
# The host's CA certificates go in, so builds trust the same TLS (egress proxies included).
make_base_image() {
    local base=$1
    if docker image inspect "$base" >/dev/null 2>&1; then
        log "base image $base is cached"
        return 0
    fi
    log "making base image $base with mmdebstrap"
    local tarball=$E2E_RUN_DIR/base.tar
    retry 3 mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,python-is-python3,ca-certificates \
        --customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
        --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        bookworm "$tarball" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" \
        || die "mmdebstrap"
    docker import --change 'CMD ["python3"]' "$tarball" "$base" >/dev/null || die "docker import"
    rm -f "$tarball"
}
