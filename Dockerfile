# One image for every runhours service (ingest, analytics, the simulated fleet):
# `docker run runhours:0.1.0 <command>` runs `runhours <command>`.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RUNHOURS_DATA_DIR=/var/lib/runhours

WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY wire ./wire
COPY store ./store
COPY simulators ./simulators
COPY edge ./edge
COPY ingest ./ingest
COPY analytics ./analytics
COPY dashboards ./dashboards
COPY runhours ./runhours
COPY examples ./examples
# Editable install: the packages run from /app with their data files (console pages),
# sub-packages included.
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /var/lib/runhours runhours \
    && mkdir -p /var/lib/runhours \
    && chown runhours /var/lib/runhours

USER runhours
VOLUME ["/var/lib/runhours"]
ENTRYPOINT ["runhours"]
CMD ["--help"]
