#!/bin/sh
# Runs once when the postgres container initialises its data directory:
# the fixture database and the SELECT-only role the connector uses.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE DATABASE connector_fixture;
CREATE ROLE connector_ro LOGIN PASSWORD '${CONNECTOR_RO_PASSWORD}';
ALTER ROLE connector_ro SET default_transaction_read_only = on;
SQL
for f in /fixtures/*.sql; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname connector_fixture -f "$f"
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname connector_fixture <<'SQL'
DO $$
DECLARE s text;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO connector_ro', s);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO connector_ro', s);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO connector_ro', s);
  END LOOP;
END $$;
SQL
