#!/bin/sh
# Runs once, on the first start of the postgresql container (empty data directory), as the
# superuser. Creates one role per consumer and their databases:
#   temporal   -> temporal, temporal_visibility  (schemas then set up by temporalio/auto-setup)
#   metalplane -> metalplane                     (schema set up by `metalplane migrate`)
# Passwords come from the container environment (TEMPORAL_DB_PASSWORD, METALPLANE_DB_PASSWORD)
# and are passed to psql as variables, never interpolated into SQL text.
# Changing a password later needs ALTER ROLE: this script does not run again.
set -eu

: "${TEMPORAL_DB_PASSWORD:?TEMPORAL_DB_PASSWORD must be set}"
: "${METALPLANE_DB_PASSWORD:?METALPLANE_DB_PASSWORD must be set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v temporal_password="$TEMPORAL_DB_PASSWORD" \
    -v metalplane_password="$METALPLANE_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;

CREATE ROLE metalplane LOGIN PASSWORD :'metalplane_password';
CREATE DATABASE metalplane OWNER metalplane;

REVOKE ALL ON DATABASE temporal, temporal_visibility FROM PUBLIC;
REVOKE ALL ON DATABASE metalplane FROM PUBLIC;
SQL

# Extension used by the SQL visibility schema; created by the superuser up front.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname temporal_visibility \
    -c 'CREATE EXTENSION IF NOT EXISTS btree_gin;'
