# The Baton worker. Build: docker build -t baton-worker .   Run: see docker-compose.yml.
# It serves one app: the refund example by default. Your own app's image:
#   FROM baton-worker
#   COPY . /srv/app
#   ENV BATON_APP=/srv/app
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 BATON_HOME=/var/lib/baton BATON_APP=/app/examples/refunds
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY baton ./baton
COPY workflows ./workflows
COPY activities ./activities
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/baton baton \
    && mkdir -p /var/lib/baton && chown baton /var/lib/baton
USER baton
# SIGTERM drains in-flight work within BATON_SHUTDOWN_GRACE_SECONDS before exit.
STOPSIGNAL SIGTERM
CMD ["baton", "worker"]
