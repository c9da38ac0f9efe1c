#!/usr/bin/env bash
# podman runs a container's healthcheck on a systemd timer; without systemd (a container, CI)
# nothing runs it and a service never turns healthy. While a compose project runs, this loop
# runs every healthcheck of its containers every few seconds (`podman healthcheck run`), which
# updates the health that `docker compose` waits on.
#
#   deploy/compose/healthd.sh start|stop PROJECT
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../lib/common.sh
. "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=../lib/podman.sh
. "$DEPLOY_DIR/lib/podman.sh"

loop() {
    local project="$1" name
    while sleep 3; do
        podman ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}}' \
            | while read -r name; do
                # </dev/null: podman would read the names still to come
                [ -n "$(podman inspect --format '{{.Config.Healthcheck}}' "$name" </dev/null \
                    2>/dev/null | grep -v '^<nil>$' || true)" ] || continue
                podman healthcheck run "$name" </dev/null >/dev/null 2>&1 || true
            done
    done
}

case "${1:-}" in
    start)
        ensure_local_dirs
        podman_ready
        read_pid "healthd-$2" >/dev/null && exit 0
        start_bg "healthd-$2" "$LOG_DIR/healthd-$2.log" \
            bash "${BASH_SOURCE[0]}" loop "$2" "$LOCAL_DIR"
        ;;
    stop) stop_pid "healthd-$2" 5 ;;
    loop) podman_ready; loop "$2" ;;
    *) sed -n '2,8p' "${BASH_SOURCE[0]}"; exit 2 ;;
esac
