# syntax=docker/dockerfile:1
# One image for NATS and every Koda service; compose.yaml picks what a container runs
# (`koda service NAME`, the same command as the local stack in koda/stack.py).

# ---- build: a virtualenv with Koda and its exact dependencies ------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install pip==26.3 setuptools==84.2.1
# Dependencies first, so a code change does not reinstall them: constraints.txt is the exact
# closure of pyproject's runtime extras (tests/deploy/pins.py keeps the two in step).
COPY constraints.txt ./
RUN /opt/venv/bin/pip install -r constraints.txt
COPY pyproject.toml ./
COPY koda ./koda
COPY shared ./shared
COPY services ./services
# The same constraints again: pip refuses anything pyproject asks for that differs from them.
RUN /opt/venv/bin/pip install --no-build-isolation -c constraints.txt ".[agent,gateway,scraper]" \
 && /opt/venv/bin/pip check

# ---- runtime: the virtualenv, the home template, a non-root user: every container but the
# scraper's (compose builds this target for them; Chromium is in the next one only) -----------
FROM python:3.11-slim-bookworm AS runtime
# bubblewrap and socat are the Claude CLI's Bash sandbox (KODA_CLAUDE_SANDBOX).
# Not version-pinned: Debian replaces them with each security release, so a pin would stop
# building; the base image tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates bubblewrap socat \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group koda \
 && mkdir -p /koda/home /koda/state/transcripts /koda/nats \
 && chown -R koda:koda /koda
COPY --from=build /opt/venv /opt/venv
# `koda init` copies the agent-home template and built-in skills from here (KODA_SOURCE_DIR).
COPY volumes/koda /opt/koda/volumes/koda
COPY skills /opt/koda/skills
# NATS's users and permissions are part of the image, like the code they describe (cluster.conf:
# one node of compose.cluster.yaml's three).
COPY volumes/nats/nats.conf volumes/nats/cluster.conf /etc/nats/
# Readable by the koda user whatever the umask of the checkout the image was built from (a 077
# checkout makes every copied file 0600 root).
RUN chmod -R a+rX /opt/koda /etc/nats
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    KODA_HOME=/koda/home \
    KODA_STATE_DIR=/koda/state \
    KODA_SOURCE_DIR=/opt/koda \
    KODA_CHROMIUM_PATH=/usr/bin/chromium \
    KODA_HTTP_HOST=0.0.0.0 \
    KODA_ENV=production
USER 10001:10001
WORKDIR /koda
# Set KODA_SERVICE to the service a container runs (compose sets its own healthcheck instead).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "koda health \"${KODA_SERVICE:?set KODA_SERVICE to the service this container runs}\" --liveness"]
CMD ["koda", "--help"]

# ---- scraper: the runtime plus Debian's Chromium (about 0.6 GB the other containers do without)
# Playwright drives it with executable_path (`playwright install` is not used); its driver (node)
# needs libatomic1 to start it. The last stage, so a plain `docker build .` makes an image that
# runs every service.
FROM runtime AS scraper
USER 0:0
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-liberation libatomic1 \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
