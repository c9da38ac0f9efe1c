# shellcheck shell=bash
# Prometheus from Debian's package, run as our own process (never the system service).

PROM_HOME="$LOCAL_DIR/prometheus"
PROM_DATA="$PROM_HOME/data"
PROM_TARGETS="$PROM_HOME/targets"
PROM_CONF="$PROM_HOME/prometheus.yml"
PROM_TEMPLATE="$DEPLOY_DIR/prometheus/prometheus.yml"
PROM_RULE_SOURCES="$DEPLOY_DIR/prometheus/rules"   # templates (deploy/prometheus/render-rules.sh)
PROM_RULES="$PROM_HOME/rules"                      # what Prometheus loads
PROM_JOB=callvault                                 # the scrape job of the workers
PROM_RUNBOOK_FILE="$PROM_HOME/runbook-url"

# Sets PROM_RUNBOOK_URL, the alerts' link to docs/runbooks.md: CALLVAULT_RUNBOOK_URL (then
# remembered), else the remembered one, else this checkout's file.
prom_runbook_url() {
    PROM_RUNBOOK_URL="$(remembered "${CALLVAULT_RUNBOOK_URL:-}" "$PROM_RUNBOOK_FILE" \
        "file://$REPO_ROOT/docs/runbooks.md")"
}

prom_render_rules() {
    prom_runbook_url
    CALLVAULT_PROMETHEUS_JOB="$PROM_JOB" CALLVAULT_RUNBOOK_URL="$PROM_RUNBOOK_URL" \
        sh "$DEPLOY_DIR/prometheus/render-rules.sh" "$PROM_RULE_SOURCES" "$PROM_RULES" \
        || die "cannot render the alert rules (see above)"
}

prom_install() {
    if ! command -v prometheus >/dev/null; then
        apt_install prometheus
        command -v prometheus >/dev/null || die "the 'prometheus' package installed no prometheus binary"
    fi
    # The Debian package ships a system service: we never use it.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
        log "stopping and disabling the system prometheus service"
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        log "stopping the system prometheus service"
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null && update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
}

prom_render_config() {
    mkdir -p "$PROM_DATA" "$PROM_TARGETS"
    prom_render_rules
    sed -e "s#@JOB@#$PROM_JOB#g" \
        -e "s#@METRICS_TARGET@#$BIND_HOST:$METRICS_PORT#g" \
        -e "s#@PROMETHEUS_TARGET@#$BIND_HOST:$PROM_PORT#g" \
        -e "s#@ALERTMANAGER_TARGET@#$BIND_HOST:$AM_PORT#g" \
        -e "s#@RULES_DIR@#$PROM_RULES#g" \
        -e "s#@TARGETS_DIR@#$PROM_TARGETS#g" \
        "$PROM_TEMPLATE" >"$PROM_CONF.tmp"
    if cmp -s "$PROM_CONF.tmp" "$PROM_CONF" \
        && [ "$(prom_loaded_sha)" = "$(cat "$PROM_HOME/.loaded.sha" 2>/dev/null || true)" ]; then
        rm -f "$PROM_CONF.tmp"
        return 1 # unchanged
    fi
    if command -v promtool >/dev/null; then
        promtool check config "$PROM_CONF.tmp" >"$LOG_DIR/promtool.log" 2>&1 \
            || die "invalid Prometheus configuration or rules (see $LOG_DIR/promtool.log)"
    fi
    mv -f "$PROM_CONF.tmp" "$PROM_CONF"
}

prom_running_pid() { read_pid prometheus; }

# sha of what Prometheus loads: the rendered config and the rule files
prom_loaded_sha() { cat "$PROM_CONF" "$PROM_RULES"/*.yml 2>/dev/null | sha256sum | cut -d' ' -f1; }

prom_reload() {
    local resp
    resp="$( (exec 3<>"/dev/tcp/$BIND_HOST/$PROM_PORT" &&
        printf 'POST /-/reload HTTP/1.1\r\nHost: %s:%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$BIND_HOST" "$PROM_PORT" >&3 &&
        timeout 5 head -n1 <&3) 2>/dev/null || true)"
    [[ "$resp" == "HTTP/1.1 200"* ]]
}

prom_ready() {
    local resp
    resp="$( (exec 3<>"/dev/tcp/$BIND_HOST/$PROM_PORT" &&
        printf 'GET /-/ready HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$BIND_HOST" "$PROM_PORT" >&3 &&
        timeout 3 head -n1 <&3) 2>/dev/null || true)"
    [[ "$resp" == "HTTP/1.1 200"* ]]
}

prom_up() {
    local pid
    if pid="$(prom_running_pid)"; then
        ensure_port_free_or_ours "$PROM_PORT" prometheus "$pid"
        # pick up changed rules/template without a restart (--web.enable-lifecycle)
        if prom_render_config; then
            log "prometheus config or rules changed: reloading"
            prom_reload || die "prometheus refused to reload (see $LOG_DIR/prometheus.log)"
            prom_loaded_sha >"$PROM_HOME/.loaded.sha"
        fi
        return 0
    fi
    ensure_port_free_or_ours "$PROM_PORT" prometheus
    prom_install
    prom_render_config || true
    prom_loaded_sha >"$PROM_HOME/.loaded.sha"
    log "starting prometheus on $BIND_HOST:$PROM_PORT"
    start_bg prometheus "$LOG_DIR/prometheus.log" prometheus \
        --config.file="$PROM_CONF" \
        --storage.tsdb.path="$PROM_DATA" \
        --storage.tsdb.retention.time=7d \
        --web.listen-address="$BIND_HOST:$PROM_PORT" \
        --web.enable-lifecycle
}

prom_wait() {
    local i
    wait_port "$PROM_PORT" prometheus 30 prometheus
    for ((i = 0; i < 100; i++)); do
        prom_ready && return 0
        sleep 0.2
    done
    die "prometheus is not ready (see $LOG_DIR/prometheus.log)"
}

prom_down() { stop_pid prometheus 20; }

prom_status() {
    local pid
    if pid="$(prom_running_pid)" && prom_ready; then
        printf '%-11s up    %s:%s  pid %s\n' prometheus "$BIND_HOST" "$PROM_PORT" "$pid"
    else
        printf '%-11s down  %s:%s\n' prometheus "$BIND_HOST" "$PROM_PORT"
    fi
}

prom_reset() { rm -rf "$PROM_HOME"; }
