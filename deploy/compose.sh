#!/usr/bin/env bash
# docker-compose.yml brought up for real with podman - no Docker engine:
#
#   deploy/compose.sh up      build every image here, start the whole file, wait until healthy
#   deploy/compose.sh down    stop and remove the containers (volumes kept; `down -v` drops them)
#   deploy/compose.sh ps      the containers and their health
#   deploy/compose.sh run ARGS...   any `docker compose` command against this project
#
# What it takes, all installed or built when missing: podman (runc, cgroupfs, ulimits for this
# machine: deploy/lib/podman.sh) serving the Docker API on a socket of its own under
# .local/podman; Docker Compose built from its Go module (cached like versitygw); and an image
# built here for every service, mapped over the public one by deploy/compose.local.yml:
# callvault's (deploy/image.sh), Kafka from the Maven jars of the native stack, PostgreSQL,
# Prometheus and Alertmanager from Debian's packages, versitygw from the native stack's build,
# and the Debian base for the small one-shot jobs. Grafana has no Debian package: it is left
# out here (profile `grafana`). Published ports are the native stack's plus 10000 (Kafka
# 29092, PostgreSQL 25432, S3 27070, Prometheus 29090, Alertmanager 29094, worker 19400,
# console 18080), so both run side by side; CALLVAULT_COMPOSE_PORTS=native keeps the file's.
# podman has no systemd here to run healthchecks on a timer, so a small loop does while the
# project runs (deploy/compose/healthd.sh).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=lib/podman.sh
. "$DEPLOY_DIR/lib/podman.sh"
# shellcheck source=lib/s3.sh
. "$DEPLOY_DIR/lib/s3.sh"

COMPOSE_VERSION=v5.6.0
COMPOSE_BIN="$GO_CACHE_BIN/docker-compose-$COMPOSE_VERSION"
SOCKET="$PODMAN_DIR/podman.sock"
PROJECT=callvault
FILES=(-f "$REPO_ROOT/docker-compose.yml" -f "$DEPLOY_DIR/compose.local.yml")

compose_install() {
    [ -x "$COMPOSE_BIN" ] && return 0
    command -v go >/dev/null || die "building Docker Compose needs Go on PATH"
    log "building Docker Compose $COMPOSE_VERSION from its Go module (once, several minutes)"
    local dir src
    dir="$(go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [ -n "$dir" ] || die "could not download the Docker Compose module"
    src="$(mktemp -d)"
    cp -r "$dir/." "$src"
    chmod -R u+w "$src"
    mkdir -p "$GO_CACHE_BIN"
    if ! (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -o "$COMPOSE_BIN.tmp" ./cmd) \
        >"$LOG_DIR/compose-build.log" 2>&1; then
        rm -rf "$src"
        die "building Docker Compose failed (see $LOG_DIR/compose-build.log)"
    fi
    rm -rf "$src"
    mv -f "$COMPOSE_BIN.tmp" "$COMPOSE_BIN"
}

# The Docker API over podman, on a socket of our own (kept running while the project is up).
api_up() {
    if [ -S "$SOCKET" ] && curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$SOCKET"
    start_bg podman-api "$LOG_DIR/podman-api.log" \
        podman system service --time=0 "unix://$SOCKET"
    local i
    for ((i = 0; i < 100; i++)); do
        curl -fsS --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "podman's API service did not answer on $SOCKET (see $LOG_DIR/podman-api.log)"
}

# A shell connected to the native stack exports CALLVAULT_* settings that the compose file
# would interpolate (CALLVAULT_S3_ENDPOINT): only the file's own variables are passed on.
compose() {
    local unset=() name
    while read -r name; do
        case "$name" in
            CALLVAULT_COMPOSE_* | CALLVAULT_ALERT_WEBHOOK_URL | CALLVAULT_RUNBOOK_URL) ;;
            *) unset+=(-u "$name") ;;
        esac
    done < <(compgen -e | grep '^CALLVAULT_' || true)
    env "${unset[@]}" DOCKER_HOST="unix://$SOCKET" COMPOSE_PROJECT_NAME="$PROJECT" \
        "$COMPOSE_BIN" --project-directory "$REPO_ROOT" "${FILES[@]}" "$@"
}

ports() {
    [ "${CALLVAULT_COMPOSE_PORTS:-shifted}" = native ] && return 0
    export CALLVAULT_COMPOSE_KAFKA_PORT=29092 CALLVAULT_COMPOSE_POSTGRES_PORT=25432 \
        CALLVAULT_COMPOSE_S3_PORT=27070 CALLVAULT_COMPOSE_PROMETHEUS_PORT=29090 \
        CALLVAULT_COMPOSE_ALERTMANAGER_PORT=29094 CALLVAULT_COMPOSE_WORKER_PORT=19400 \
        CALLVAULT_COMPOSE_CONSOLE_PORT=18080 CALLVAULT_COMPOSE_GRAFANA_PORT=23000
}

images() {
    local stage="$PODMAN_DIR/context" t0=$SECONDS
    bash "$DEPLOY_DIR/image.sh" # callvault's own, and the Debian base
    mkdir -p "$stage"
    # Kafka: the native stack's Maven jars
    if ! podman_has_image localhost/callvault/kafka:4.1.1; then
        [ -d "$LOCAL_DIR/kafka/libs" ] || die "no Kafka jars in $LOCAL_DIR/kafka/libs: run 'make up' first"
        rm -rf "$stage/kafka" && mkdir -p "$stage/kafka"
        cp -r "$LOCAL_DIR/kafka/libs" "$stage/kafka/libs"
        cp "$DEPLOY_DIR/images/kafka-run.sh" "$DEPLOY_DIR/kafka/log4j2.properties" "$stage/kafka/"
        podman_build localhost/callvault/kafka:4.1.1 "$stage/kafka" \
            "$DEPLOY_DIR/images/kafka.Dockerfile" --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"
    fi
    podman_has_image localhost/callvault/postgres:15 \
        || podman_build localhost/callvault/postgres:15 "$DEPLOY_DIR/images" \
            "$DEPLOY_DIR/images/postgres.Dockerfile" --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"
    if ! podman_has_image "localhost/callvault/versitygw:$VGW_VERSION"; then
        [ -x "$VGW_BIN" ] || s3_install
        rm -rf "$stage/versitygw" && mkdir -p "$stage/versitygw"
        cp "$VGW_BIN" "$stage/versitygw/versitygw"
        podman_build "localhost/callvault/versitygw:$VGW_VERSION" "$stage/versitygw" \
            "$DEPLOY_DIR/images/versitygw.Dockerfile" --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"
    fi
    local target
    for target in prometheus alertmanager; do
        podman_has_image "localhost/callvault/$target:debian" \
            || podman_build "localhost/callvault/$target:debian" "$DEPLOY_DIR/images" \
                "$DEPLOY_DIR/images/prometheus.Dockerfile" --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE" \
                --build-arg "TARGET=$target"
    done
    log "images ready in $((SECONDS - t0))s"
}

cmd_up() {
    local t0=$SECONDS
    ensure_local_dirs
    podman_ready
    compose_install
    images
    api_up
    ports
    "$DEPLOY_DIR/compose/healthd.sh" start "$PROJECT"
    compose up --detach --no-build --wait --wait-timeout 600 \
        || { compose ps -a >&2; die "the compose project did not come up healthy (compose.sh run logs SERVICE)"; }
    log "compose project up in $((SECONDS - t0))s: console http://127.0.0.1:${CALLVAULT_COMPOSE_CONSOLE_PORT:-8080}/"
}

cmd_down() {
    ensure_local_dirs
    podman_ready
    if [ -x "$COMPOSE_BIN" ]; then
        api_up
        ports
        compose down "$@"
    fi
    "$DEPLOY_DIR/compose/healthd.sh" stop "$PROJECT"
    stop_pid podman-api 10
}

case "${1:-}" in
    up) cmd_up ;;
    down) shift; cmd_down "$@" ;;
    ps) ensure_local_dirs; podman_ready; api_up; ports; compose ps -a ;;
    images) ensure_local_dirs; podman_ready; images ;;
    run) shift; ensure_local_dirs; podman_ready; compose_install; api_up; ports; compose "$@" ;;
    *) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
