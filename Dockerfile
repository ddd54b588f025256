# syntax=docker/dockerfile:1
# Walter: one image for the web site (gunicorn) and the daily job (python manage.py run_daily).
# Build: docker build -t walter .      Run: see docker-compose.yml and infra/walter.yml (same commands).

# --- builder: every requirement as a wheel, so the runtime stage needs no compiler and no network.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt

# --- runtime
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WALTER_VAR_DIR=/app/var \
    PORT=8000
RUN groupadd --system --gid 10001 walter \
 && useradd --system --uid 10001 --gid walter --home-dir /app --no-create-home --shell /usr/sbin/nologin walter
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r requirements.txt
COPY . .
# Static files are collected into the image (whitenoise serves them); the key only satisfies Django at build time.
# Production settings, so the files get the hashed, compressed names (and manifest) that production serves.
RUN WALTER_ENV=production SECRET_KEY=collectstatic-only-not-a-secret ALLOWED_HOSTS=build \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 python manage.py collectstatic --noinput \
 && mkdir -p /app/var \
 && chown -R walter:walter /app/var
USER walter
EXPOSE 8000
# Python, not curl: the slim image has no curl, and this is the same check ECS runs.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=5)"]
# Workers, threads and timeout come from GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_TIMEOUT.
CMD ["gunicorn", "--config", "python:walter_site.gunicorn_conf", "walter_site.wsgi"]
