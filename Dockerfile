# syntax=docker/dockerfile:1
#
# Referral service image: a builder stage installs the project and its dependencies into a
# virtualenv; the runtime stage copies only that virtualenv onto a clean slim base and runs as
# an unprivileged, numeric user. Build from the repository root:
#
#     docker build -t referral-service:local .
#
# Pin the base by digest for release builds, e.g.
#     docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# Both stages must use the same base: the virtualenv's interpreter is a symlink into it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships a manylinux wheel for CPython 3.11 on amd64 and arm64, so no compiler
# is installed (--only-binary makes that a rule, not a hope). If a new platform ever needs one,
# install it here, in the builder only.
#
# The virtualenv is made without pip; the base image's pip installs into it (--python), so the
# runtime image carries no installer. A regular (non-editable) install puts the application in
# site-packages: nothing in the runtime stage refers back to /src.
RUN python -m venv --without-pip /opt/venv

WORKDIR /src
# The dependencies first, exactly as locked: every file is checked against requirements.lock's
# sha256 hashes (`make lock` regenerates it; it holds the hashes of every platform's wheels).
# Its own layer, so a code change does not reinstall them.
COPY requirements.lock ./
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir \
    --require-hashes --only-binary=:all: -r requirements.lock

# Then the project itself, built from the copied source (so it has no hash to check), with
# --no-deps: everything it needs is already installed, so nothing unlocked comes in. Only its
# build backend (setuptools, in pip's throwaway build environment) is not locked; it never
# reaches the image. `pip check` fails the build if the lock lacks a dependency of the project.
# README.md* so the build works before and after the README exists (pyproject names it).
# bench/ is not copied: the load benchmark is no part of the image.
COPY pyproject.toml README.md* ./
COPY api ./api
COPY service ./service
COPY eligibility ./eligibility
# Smoke check: the console script's module imports with the installed dependencies.
RUN python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps . \
    && python -m pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/python -c "import service.cli"


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="referral-service" \
      org.opencontainers.image.description="Referral-pathway API for specialised parent-infant relationship teams"

# The runtime needs no installer: remove the base image's pip/setuptools/wheel (less to patch,
# nothing to install packages with at run time). A fixed UID/GID so Kubernetes' runAsUser and
# file ownership on mounted secrets line up with the image.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 referral \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin referral

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REFERRAL_HOST=0.0.0.0 \
    REFERRAL_PORT=8000 \
    REFERRAL_WORKERS=1 \
    REFERRAL_LOG_FORMAT=json

# Root-owned and empty: in production the service writes only to PostgreSQL, so the root
# filesystem can be mounted read-only (give the container a writable /tmp).
WORKDIR /app

USER 10001:10001

# Only the API port. Metrics listen on REFERRAL_METRICS_PORT (9100) on purpose without an
# EXPOSE: they need no token, so `docker run -P` must not publish them. Scrape them from
# inside the cluster or the compose network.
EXPOSE 8000
STOPSIGNAL SIGTERM

# No curl in slim images: the standard library does it, ignoring any HTTP(S)_PROXY in the
# environment. Liveness only (process up); readiness, which needs the database, is the
# orchestrator's probe of /health/ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/health/live' % os.environ.get('REFERRAL_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["referral-service"]
CMD ["serve"]
