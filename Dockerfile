# syntax=docker/dockerfile:1
#
# Ringfence container image.
#
#   docker build -t ringfence:dev .
#   docker run --rm -p 50051:50051 -v "$PWD/rules:/etc/ringfence/rules:ro" ringfence:dev
#
# BASE_IMAGE must provide python3 (3.11+) with the venv module. The default is the official
# slim image pinned by digest (a tag can be re-pushed, a digest cannot); bump both together.
# Builds without a registry pass a locally bootstrapped Debian base, also by digest
# (.ci/image.sh, docs/operations.md).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Every third-party file is checked against a hash in the lock files (`make lock`): a
# changed or substituted download fails the build instead of shipping.
COPY requirements.lock requirements-build.lock ./

# Build tooling lives in its own venv so nothing of it reaches the runtime venv.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes -r requirements-build.lock

COPY pyproject.toml README.md ./
COPY dsl/ dsl/
COPY server/ server/
# No build isolation: it would fetch setuptools again, unhashed.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# The runtime venv is created at its final path (venvs are not relocatable) with bytecode
# compiled now, since the running container cannot write it; no installer is shipped (pip,
# and the setuptools and wheel that a venv may seed, go).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r requirements.lock \
 && /opt/venv/bin/pip install --no-deps /dist/*.whl \
 && /opt/venv/bin/pip uninstall -y -q setuptools wheel 2>/dev/null; \
    /opt/venv/bin/pip uninstall -y pip \
 && /opt/venv/bin/ringfence --help > /dev/null

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="ringfence" \
      org.opencontainers.image.description="Phone-number risk decision service (gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/ringfence" \
      org.opencontainers.image.documentation="docs/operations.md"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A fixed numeric UID/GID so Kubernetes runAsNonRoot can verify it and fsGroup can match.
# Then the base's installers go: pip, setuptools and wheel of the system Python (Debian's
# packages, or the official image's /usr/local ones), the venv module with its bundled
# wheels, and apt itself. dpkg's database stays, so scanners (and the SBOM below) see what
# is installed.
RUN groupadd --system --gid 10001 ringfence \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ringfence \
 && { python3 -m pip uninstall -y -q pip setuptools wheel 2>/dev/null || true; } \
 && dpkg-query -W -f '${Package} ${db:Status-Status}\n' \
      | awk '$2 == "installed" && $1 ~ /^python3(\.[0-9]+)?-(pip|pip-whl|setuptools|setuptools-whl|wheel|venv)$/ {print $1}' \
      | xargs -r dpkg --purge --force-depends \
 && dpkg-query -W -f '${Package} ${db:Status-Status}\n' \
      | awk '$2 == "installed" && $1 ~ /^(apt|apt-utils|libapt-pkg.*)$/ {print $1}' \
      | xargs -r dpkg --purge --force-remove-essential --force-remove-protected --force-depends \
 && rm -rf /var/lib/apt /var/cache/apt /var/log/apt /etc/apt /usr/local/bin/pip* /usr/local/bin/wheel

COPY --from=build /opt/venv /opt/venv
# Example policy so the image starts on its own; deployments mount their rules over it.
COPY --chown=10001:10001 rules/ /etc/ringfence/rules/

# The image's own SBOM: the OS and its packages with their licences, the interpreter and
# the venv's packages, as they are in this final image (.ci/sbom_image.py; .ci/image.sh
# copies it out to build/sbom-image.cdx.json).
RUN --mount=type=bind,source=.ci/sbom_image.py,target=/tmp/sbom_image.py \
    /opt/venv/bin/python /tmp/sbom_image.py --venv /opt/venv --version "${VERSION}" \
      --created "${CREATED}" -o /usr/share/doc/ringfence/sbom.cdx.json

# Every setting has a RINGFENCE_* variable; defaults live here (not as flags in CMD) so that
# `docker run -e` and a Kubernetes env entry can override each of them.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RINGFENCE_RULES=/etc/ringfence/rules \
    RINGFENCE_LISTEN=0.0.0.0:50051 \
    RINGFENCE_METRICS_LISTEN=0.0.0.0:9090 \
    RINGFENCE_HEALTH_LISTEN=0.0.0.0:8080

# The root filesystem can be read-only: the only writable paths are these volumes.
VOLUME ["/etc/ringfence/rules", "/tmp"]

USER 10001:10001
EXPOSE 50051 9090 8080
STOPSIGNAL SIGTERM
# Readiness of this container's own server, wherever RINGFENCE_LISTEN puts it and with TLS
# on: it asks the plain-HTTP /readyz (RINGFENCE_HEALTH_LISTEN). Kubernetes ignores it and
# runs the chart's probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/opt/venv/bin/ringfence", "health", "--local"]

ENTRYPOINT ["/opt/venv/bin/ringfence"]
CMD ["serve"]
