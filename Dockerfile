# Build stage: install into a venv so the runtime image gets only the
# installed package, not build leftovers or the rest of the source tree.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /app
COPY . /app
# Non-editable install of the local path; nothing to pin here.
RUN pip install --no-cache-dir /app


FROM python:3.11-slim

# Production mode: `ledger serve` refuses public or placeholder secrets and seeded users.
ENV LEDGER_ENV=production \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    LEDGER_MIGRATIONS_DIR=/app/sql \
    LEDGER_DATA_DIR=/var/lib/ledger

# Fixed uid/gid so volume permissions and runAsNonRoot policies are predictable.
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --no-log-init --uid 10001 --gid ledger \
       --no-create-home --shell /usr/sbin/nologin ledger \
    && install -d -o ledger -g ledger -m 0700 /var/lib/ledger

COPY --from=build /opt/venv /opt/venv
# Migrations are read at run time; LEDGER_MIGRATIONS_DIR points here.
COPY --from=build /app/sql /app/sql

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# slim has no curl; urlopen raises on non-2xx or connection errors -> exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["ledger", "serve", "--host", "0.0.0.0", "--port", "8000"]
