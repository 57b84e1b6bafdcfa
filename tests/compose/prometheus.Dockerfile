# A stand-in for compose.yaml's prom/prometheus image where Docker Hub cannot be reached: Debian's
# Prometheus on the same local base image, with the entry point and wget healthcheck the upstream
# image has. Only the compose end-to-end test builds it (tests/compose/e2e.sh).
FROM python:3.11-slim-bookworm
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus wget \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
ENTRYPOINT ["/usr/bin/prometheus"]
