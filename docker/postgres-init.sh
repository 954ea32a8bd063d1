#!/bin/sh
# First start of the postgres container only (docker-entrypoint-initdb.d): the three SafeShrink roles
# and the database, owned by the owner role. No role is a superuser. `manage.py setup_db_roles` (run
# by compose's migrate job after every migrate) grants the application's and the sealer's roles theirs.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v owner_password="$SAFESHRINK_OWNER_DB_PASSWORD" -v app_password="$SAFESHRINK_APP_DB_PASSWORD" \
     -v sealer_password="$SAFESHRINK_SEALER_DB_PASSWORD" <<'SQL'
CREATE ROLE safeshrink_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE safeshrink_app LOGIN PASSWORD :'app_password';
CREATE ROLE safeshrink_sealer LOGIN PASSWORD :'sealer_password';
CREATE DATABASE safeshrink OWNER safeshrink_owner;
REVOKE ALL ON DATABASE safeshrink FROM PUBLIC;
GRANT CONNECT ON DATABASE safeshrink TO safeshrink_app, safeshrink_sealer;
SQL
