# shellcheck shell=bash
# Alertmanager from Debian's package (prometheus-alertmanager), run as our own process (never
# the system service), on 127.0.0.1:$AM_PORT with HA clustering off. Prometheus sends it the
# alerts of deploy/prometheus/rules; its one receiver is a webhook whose URL is configurable:
#   CALLVAULT_ALERT_WEBHOOK_URL=https://chat.example/hooks/abc deploy/stack.sh up
# The URL given last is kept in .local/alertmanager/webhook-url; without one, alerts go to a
# local placeholder address where nothing listens (see them at http://127.0.0.1:$AM_PORT).

AM_HOME="$LOCAL_DIR/alertmanager"
AM_DATA="$AM_HOME/data"
AM_CONF="$AM_HOME/alertmanager.yml"
AM_URL_FILE="$AM_HOME/webhook-url"
AM_TEMPLATE="$DEPLOY_DIR/prometheus/alertmanager.yml"
AM_PLACEHOLDER_URL="http://$BIND_HOST:$AM_PLACEHOLDER_PORT/alerts"

am_install() {
    if ! command -v prometheus-alertmanager >/dev/null; then
        apt_install prometheus-alertmanager
        command -v prometheus-alertmanager >/dev/null \
            || die "the 'prometheus-alertmanager' package installed no prometheus-alertmanager binary"
    fi
    # The Debian package ships a system service (port 9093, gossip on 9094): we never use it.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then
        log "stopping and disabling the system prometheus-alertmanager service"
        systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus-alertmanager ] \
        && /etc/init.d/prometheus-alertmanager status >/dev/null 2>&1; then
        log "stopping the system prometheus-alertmanager service"
        /etc/init.d/prometheus-alertmanager stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null && update-rc.d prometheus-alertmanager disable >/dev/null 2>&1 || true
    fi
}

# Sets AM_WEBHOOK_URL, the receiver's URL: CALLVAULT_ALERT_WEBHOOK_URL (then remembered), else
# the remembered one, else the placeholder.
am_webhook_url() {
    local given="${CALLVAULT_ALERT_WEBHOOK_URL:-}"
    [ -z "$given" ] || [[ "$given" =~ ^https?://[^[:space:]\"\\]+$ ]] \
        || die "CALLVAULT_ALERT_WEBHOOK_URL must be an http(s) URL without spaces, quotes or backslashes"
    AM_WEBHOOK_URL="$(remembered "$given" "$AM_URL_FILE" "$AM_PLACEHOLDER_URL")"
}

# Renders the config; returns 1 when it is unchanged.
am_render_config() {
    local template
    am_webhook_url
    mkdir -p "$AM_DATA"
    template="$(cat "$AM_TEMPLATE")"
    # a quoted replacement: '&' in a query string stays literal
    printf '%s\n' "${template//@WEBHOOK_URL@/"$AM_WEBHOOK_URL"}" >"$AM_CONF.tmp"
    if cmp -s "$AM_CONF.tmp" "$AM_CONF"; then
        rm -f "$AM_CONF.tmp"
        return 1
    fi
    if command -v amtool >/dev/null; then
        amtool check-config "$AM_CONF.tmp" >"$LOG_DIR/amtool.log" 2>&1 \
            || die "invalid Alertmanager configuration (see $LOG_DIR/amtool.log)"
    fi
    mv -f "$AM_CONF.tmp" "$AM_CONF"
}

am_running_pid() { read_pid alertmanager; }

# am_http METHOD PATH -> the status line of the answer
am_http() {
    (exec 3<>"/dev/tcp/$BIND_HOST/$AM_PORT" &&
        printf '%s %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' \
            "$1" "$2" "$BIND_HOST" "$AM_PORT" >&3 &&
        timeout 5 head -n1 <&3) 2>/dev/null || true
}

am_ready() { [[ "$(am_http GET /-/ready)" == "HTTP/1.1 200"* ]]; }

am_up() {
    local pid
    if pid="$(am_running_pid)"; then
        ensure_port_free_or_ours "$AM_PORT" alertmanager "$pid"
        if am_render_config; then
            log "alertmanager config changed: reloading"
            [[ "$(am_http POST /-/reload)" == "HTTP/1.1 200"* ]] \
                || die "alertmanager refused to reload (see $LOG_DIR/alertmanager.log)"
        fi
        return 0
    fi
    ensure_port_free_or_ours "$AM_PORT" alertmanager
    am_install
    am_render_config || true
    log "starting alertmanager on $BIND_HOST:$AM_PORT"
    start_bg alertmanager "$LOG_DIR/alertmanager.log" prometheus-alertmanager \
        --config.file="$AM_CONF" \
        --storage.path="$AM_DATA" \
        --web.listen-address="$BIND_HOST:$AM_PORT" \
        --web.external-url="http://$BIND_HOST:$AM_PORT" \
        --cluster.listen-address=
}

am_wait() {
    local i
    wait_port "$AM_PORT" alertmanager 30 alertmanager
    for ((i = 0; i < 100; i++)); do
        am_ready && return 0
        sleep 0.2
    done
    die "alertmanager is not ready (see $LOG_DIR/alertmanager.log)"
}

am_down() { stop_pid alertmanager 20; }

am_status() {
    local pid
    if pid="$(am_running_pid)" && am_ready; then
        printf '%-11s up    %s:%s  pid %s  -> %s\n' alertmanager "$BIND_HOST" "$AM_PORT" "$pid" \
            "$(head -n1 "$AM_URL_FILE" 2>/dev/null || echo "$AM_PLACEHOLDER_URL")"
    else
        printf '%-11s down  %s:%s\n' alertmanager "$BIND_HOST" "$AM_PORT"
    fi
}

# Keeps webhook-url (a setting, like the secrets), deletes the rest.
am_reset() { rm -rf "$AM_DATA" "$AM_CONF" "$AM_CONF.tmp"; }
