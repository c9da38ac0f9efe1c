#!/bin/bash
# The local PostgreSQL image's start (deploy/images/postgres.Dockerfile), as the public image's:
# on an empty data directory initdb with POSTGRES_USER and the password in
# POSTGRES_PASSWORD_FILE, the database POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sh and
# *.sql; the server listens on every address with scram-sha-256 passwords.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password="$(cat "${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE}")"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS holds several words
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$password") \
        --auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres)
    [ "$POSTGRES_DB" = postgres ] || "${psql[@]}" -c "CREATE DATABASE \"$POSTGRES_DB\""
    export POSTGRES_USER POSTGRES_DB
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
            *.sh)
                # shellcheck disable=SC1090 # the scripts the deployment mounts
                if [ -x "$file" ]; then "$file"; else . "$file"; fi
                ;;
            *.sql) "${psql[@]}" --dbname "$POSTGRES_DB" -f "$file" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
fi
exec "$@"
