# syntax=docker/dockerfile:1
# Remediator's image:  docker build -t remediator:0.1.0 .
#
# Stage "build" makes wheels of the package and every dependency; stage "runtime" installs only
# those wheels on a slim Python: no compiler, no source tree, no pip cache, a non-root user.
# Every setting is an environment variable (see the README's "Settings").

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ ./service/
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    REMEDIATOR_POLICIES=/etc/remediator/policies
# A numeric user, so Kubernetes' runAsNonRoot can verify it; its home holds the embedded SQLite
# store of a single-process install (several replicas use PostgreSQL instead).
RUN groupadd --system --gid 10001 remediator \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/remediator \
        --no-create-home --shell /usr/sbin/nologin remediator \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/remediator
# The wheels are mounted for this step only: they never become a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels remediator
# The shipped policies, as a default; deployments mount their own over this directory.
COPY policies/ /etc/remediator/policies/
WORKDIR /var/lib/remediator
USER 10001:10001
EXPOSE 9095
# For `docker run` and compose; Kubernetes ignores it and uses the Deployment's probes. It asks
# /health on the default port (REMEDIATOR_LISTEN 0.0.0.0:9095): 503 (store unreachable) fails it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9095/health', timeout=4)"]
ENTRYPOINT ["remediator", "serve"]
