# shellcheck shell=bash
# PostgreSQL from Debian's packages, as a private cluster in .local/pg owned by
# the 'postgres' system user (the server refuses to run as root).

PG_HOME="$LOCAL_DIR/pg"
PG_USER_OS=postgres
PG_ROLE=callvault  # owns the schema: migrations only (CALLVAULT_DATABASE_ADMIN_URL)
PG_PASSWORD=callvault
PG_APP_ROLE=callvault_app  # the workers' role: may only append to the audit trail
PG_APP_PASSWORD=callvault_app
PG_DB=callvault
PG_BIN=""
PG_DATA=""
PG_SOCK=""
PG_LOG=""

pg_find_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        PG_BIN="$d"
        return 0
    fi
    return 1
}

as_pg() { runuser -u "$PG_USER_OS" -- "$@"; }

# The server runs as 'postgres', which must be able to reach its data dir. When
# the repo lives somewhere it cannot traverse (e.g. under /root), the cluster
# lives in /var/lib/callvault/<hash> and .local/pg is a symlink to it.
pg_resolve_dirs() {
    local create="${1:-}"
    if [ -L "$PG_HOME" ] || [ -d "$PG_HOME" ] || [ -z "$create" ]; then
        :
    elif [ "$(id -u)" -eq 0 ] && ! runuser -u "$PG_USER_OS" -- test -x "$LOCAL_DIR"; then
        local alt
        alt="/var/lib/callvault/$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)/pg"
        mkdir -p "$alt"
        ln -s "$alt" "$PG_HOME"
        log "user $PG_USER_OS cannot reach $LOCAL_DIR; cluster stored in $alt (linked from .local/pg)"
    else
        mkdir -p "$PG_HOME"
    fi
    local real
    real="$(readlink -f "$PG_HOME" 2>/dev/null || echo "$PG_HOME")"
    PG_DATA="$real/data"
    PG_LOG="$real/postgres.log"
    PG_SOCK="$real/run"
    # unix socket paths are limited to 107 bytes
    if [ "${#PG_SOCK}" -gt 90 ]; then
        PG_SOCK="/tmp/callvault-pg-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
    fi
}

pg_install() {
    pg_find_bin || apt_install postgresql
    pg_find_bin || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin after installing 'postgresql'"
    command -v runuser >/dev/null || apt_install util-linux
    if ! id "$PG_USER_OS" >/dev/null 2>&1; then
        log "creating system user $PG_USER_OS"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER_OS"
    fi
}

pg_running_pid() {
    local pid
    [ -n "$PG_DATA" ] || pg_resolve_dirs
    [ -f "$PG_DATA/postmaster.pid" ] || return 1
    pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid" >"$(pid_file postgres)"
    echo "$pid"
}

pg_psql() {
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_up() {
    local pid
    pg_resolve_dirs
    if pid="$(pg_running_pid)"; then
        ensure_port_free_or_ours "$PG_PORT" postgres "$pid"
        pg_find_bin && pg_app_role && pg_tls
        return 0
    fi
    ensure_port_free_or_ours "$PG_PORT" postgres
    pg_install
    pg_resolve_dirs create
    mkdir -p "$PG_SOCK"
    chown "$PG_USER_OS:" "$PG_SOCK"
    chown "$PG_USER_OS:" "$(readlink -f "$PG_HOME")"
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "initialising PostgreSQL cluster ($("$PG_BIN/postgres" --version | awk '{print $3}')) in .local/pg"
        rm -rf "$PG_DATA"
        mkdir -p "$PG_DATA"
        chown "$PG_USER_OS:" "$PG_DATA"
        as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$LOG_DIR/postgres-initdb.log" 2>&1 \
            || die "initdb failed (see $LOG_DIR/postgres-initdb.log)"
        rm -f "$PG_DATA/.callvault-bootstrapped"
    fi
    # Settings passed on the command line: they follow the port/socket if moved.
    log "starting postgres on $BIND_HOST:$PG_PORT"
    touch "$PG_LOG"
    chown "$PG_USER_OS:" "$PG_LOG"
    ln -sfn "$PG_LOG" "$LOG_DIR/postgres.log"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
        -o "-c listen_addresses=$BIND_HOST -c port=$PG_PORT -c unix_socket_directories=$PG_SOCK \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
            -c max_connections=200 -c shared_buffers=128MB" \
        start >/dev/null 2>>"$PG_LOG" 9>&- \
        || die "postgres did not start (see $PG_LOG)"
    pid="$(pg_running_pid)" || die "postgres started but wrote no postmaster.pid"
    if [ ! -f "$PG_DATA/.callvault-bootstrapped" ]; then
        log "creating role and database '$PG_DB'"
        pg_psql >>"$PG_LOG" 2>&1 <<SQL || die "could not create role/database (see $PG_LOG)"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN SUPERUSER PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')
\\gexec
SQL
        as_pg touch "$PG_DATA/.callvault-bootstrapped"
    fi
    pg_app_role
    pg_tls
}

# The workers' role (idempotent; also for a cluster made before the role existed).
pg_app_role() {
    pg_psql >>"$PG_LOG" 2>&1 <<SQL || die "could not create role $PG_APP_ROLE (see $PG_LOG)"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_APP_ROLE') THEN
    CREATE ROLE $PG_APP_ROLE LOGIN PASSWORD '$PG_APP_PASSWORD';
  END IF;
END \$\$;
SQL
}

# pg_tls: TLS on, with the local CA's certificate, so that clients can connect with
# sslmode=verify-full; plain connections keep working. Applied by a reload, never a restart.
pg_tls() {
    local dir changed=0 file
    tls_ensure
    dir="$(readlink -f "$PG_HOME")/tls"
    mkdir -p "$dir"
    chown "$PG_USER_OS:" "$dir"
    chmod 0700 "$dir"
    for file in server.pem server.key; do
        if ! cmp -s "$TLS_DIR/$file" "$dir/$file"; then
            install -m 0600 -o "$PG_USER_OS" "$TLS_DIR/$file" "$dir/$file"
            changed=1
        fi
    done
    if [ "$changed" = 0 ] && [ "$(pg_psql -Atc 'SHOW ssl')" = on ]; then
        return 0
    fi
    log "postgres: TLS on (the local CA's certificate), by a reload"
    pg_psql -c "ALTER SYSTEM SET ssl_cert_file = '$dir/server.pem'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$dir/server.key'" -c "ALTER SYSTEM SET ssl = on" \
        -c "SELECT pg_reload_conf()" >>"$PG_LOG" 2>&1 || die "could not turn TLS on (see $PG_LOG)"
    local i
    for ((i = 0; i < 25; i++)); do
        [ "$(pg_psql -Atc 'SHOW ssl')" = on ] && return 0
        sleep 0.2
    done
    die "postgres did not turn TLS on (see $PG_LOG)"
}

pg_down() {
    local pid
    pg_resolve_dirs
    if pid="$(pg_running_pid)"; then
        if pg_find_bin; then
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
        fi
        stop_pid postgres 10
    fi
    rm -f "$(pid_file postgres)"
}

pg_status() {
    local pid
    pg_resolve_dirs
    if pid="$(pg_running_pid)" && port_open "$PG_PORT"; then
        printf '%-11s up    %s:%s  pid %s\n' postgres "$BIND_HOST" "$PG_PORT" "$pid"
    else
        printf '%-11s down  %s:%s\n' postgres "$BIND_HOST" "$PG_PORT"
    fi
}

pg_reset() {
    pg_resolve_dirs
    rm -rf "$PG_DATA" "$PG_SOCK" "$PG_LOG"
}
