#!/bin/sh
# Run once by the postgres service on its first start (/docker-entrypoint-initdb.d): the
# schema owner `callvault` (no superuser; `callvault migrate` only) owns the database, and
# callvault's role `callvault_app` (every other container) may connect - `migrate` grants it
# the rest. Passwords from the postgres secrets volume; POSTGRES_USER stays the only superuser.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$(cat /run/secrets/owner_password)" -v app="$(cat /run/secrets/app_password)" \
    -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE callvault LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner';
CREATE ROLE callvault_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app';
ALTER DATABASE :"db" OWNER TO callvault;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO callvault_app;
SQL
