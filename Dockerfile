# syntax=docker/dockerfile:1
# ai-med-extract: the service image (CPU). Build:  docker build -t ai-med-extract .
# Run:  docker run -p 7860:7860 --read-only --tmpfs /tmp -v ame-data:/data -v ame-models:/models \
#         -e AME_SECURITY__SECRET_KEY=... -e AME_STORAGE__ENCRYPTION_KEY=... ai-med-extract
#
# The install steps are the Makefile's (tests/deploy/test_dockerfiles.py keeps them the same):
# system packages from apt-packages.txt (through scripts/install-system-packages.sh; the test-only
# list is left out), a virtualenv, the locked requirements with --no-deps, the project with --no-deps.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: compilers for packages without wheels; the virtualenv is copied out whole ----------
FROM ${PYTHON_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# requirements.txt pins torch's "+cpu" build, which PyPI does not carry: pass the PyTorch CPU wheel
# index (--build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), a mirror that has
# it, or a folder of wheels (PIP_FIND_LINKS, bind-mounted); PIP_CERT for a proxy's certificate
# authority. Build arguments reach pip through the environment of the RUN steps only; they are not
# kept in the image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
RUN python -m venv .venv
ENV PATH=/app/.venv/bin:$PATH
RUN pip install --quiet --upgrade pip
COPY requirements.txt ./
RUN pip install --no-deps -r requirements.txt
COPY pyproject.toml README.md alembic.ini models_config.json ./
COPY src ./src
# Byte-code ahead of time (the root filesystem may be read-only); packages' test folders and files
# written for newer Pythons (torch ships py312_intrinsics.py) are left out: they do not compile on 3.11.
RUN pip install --no-deps -e . \
    && python -m compileall -q src \
    && python -m compileall -q -j 0 -x '/(tests?|testing)/|py3(1[2-9])' .venv/lib

# ---- runtime: slim, non-root, read-only root filesystem compatible -------------------------------
FROM ${PYTHON_IMAGE} AS runtime
COPY apt-packages.txt /tmp/setup/
COPY scripts/install-system-packages.sh /tmp/setup/scripts/
RUN /tmp/setup/scripts/install-system-packages.sh apt-packages.txt \
    && rm -rf /var/lib/apt/lists/* /tmp/setup \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app \
    && mkdir -p /data /models \
    && chown app:app /data /models
WORKDIR /app
COPY --from=build /app /app
COPY infra/docker/start.sh /usr/local/bin/ame-start
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/models/huggingface \
    HF_HUB_OFFLINE=1 \
    TORCH_HOME=/models/torch \
    AME_ENVIRONMENT=production \
    AME_HOST=0.0.0.0 \
    AME_PORT=7860 \
    AME_DATABASE__URL=sqlite+aiosqlite:////data/ai-med-extract.db \
    AME_STORAGE__DIRECTORY=/data/storage \
    AME_MODELS__CACHE_DIR=/models \
    AME_MODELS__CONFIG_PATH=/app/models_config.json
# Documents, results and the SQLite database (when no PostgreSQL URL is given) live in /data;
# downloaded or exported models in /models. Everything else may be read-only.
VOLUME ["/data", "/models"]
USER 10001:10001
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('AME_PORT', '7860'), timeout=4)"]
ENTRYPOINT ["/usr/local/bin/ame-start"]
