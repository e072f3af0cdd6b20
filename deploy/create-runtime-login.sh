#!/bin/sh
# Run once by the postgres image as it creates the database (docker-entrypoint-initdb.d): the
# login the service serves as. It is a member of ledger_runtime, whose rights `ledger migrate`
# grants (sql/0022): reading, and writing only through the ledger's own functions.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=password="$LEDGER_DB_RUNTIME_PASSWORD" <<'SQL'
CREATE ROLE ledger_runtime NOLOGIN;
CREATE ROLE ledger_app LOGIN PASSWORD :'password' IN ROLE ledger_runtime;
SQL
