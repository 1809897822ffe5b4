# The local runtime (`currencies up`) for docker-compose.yml: the API, the stream and queue pollers
# and /metrics, pointed at the compose stack's moto and Elasticsearch (no Java needed in here).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pinned dependencies first: this layer is rebuilt only when a requirements file changes.
COPY requirements.txt requirements-dev.txt ./
RUN pip install -r requirements.txt -r requirements-dev.txt setuptools==80.9.0

# Editable on purpose: the runtime loads app.py and .chalice/config.json from the project
# directory next to its package (currencies_local/pipeline.py, PROJECT_DIR).
COPY pyproject.toml README.md app.py ./
COPY .chalice/config.json .chalice/config.json
COPY chalicelib chalicelib
COPY currencies_local currencies_local
RUN pip install --no-deps --no-build-isolation -e . \
    && useradd --system --no-create-home --shell /usr/sbin/nologin currencies

# Elasticsearch is never started in here (--search-url), so root is not needed at all.
USER currencies
EXPOSE 8000 9108
ENTRYPOINT ["currencies"]
CMD ["up", "--host", "0.0.0.0", "--moto-url", "http://127.0.0.1:5000", "--search-url", "http://127.0.0.1:9200", "--no-prometheus"]
