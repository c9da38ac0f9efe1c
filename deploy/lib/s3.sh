# shellcheck shell=bash
# S3 API: versitygw (POSIX backend, bucket versioning enabled so that object lock works).
# Built with 'go install' from the Go module proxy (go_install_cached).

VGW_MODULE=github.com/versity/versitygw
VGW_VERSION=v1.8.0
S3_HOME="$LOCAL_DIR/s3"
S3_DATA="$S3_HOME/data"
S3_VERSIONS="$S3_HOME/versions"
S3_ACCESS_KEY=callvault
S3_SECRET_KEY=callvault-secret-key
S3_REGION=eu-central-1
VGW_BIN="$GO_CACHE_BIN/versitygw-$VGW_VERSION"

s3_install() { go_install_cached versitygw "$VGW_VERSION" "$VGW_MODULE/cmd/versitygw" >/dev/null; }

# The POSIX backend keeps object metadata (etag, lock settings, versions) in
# user.* extended attributes.
s3_check_xattr() {
    local f="$S3_HOME/.xattr-probe"
    : >"$f"
    if ! "$HELPER_PY" - "$f" <<'PY' 2>/dev/null; then
import os, sys
os.setxattr(sys.argv[1], "user.callvault.probe", b"1")
assert os.getxattr(sys.argv[1], "user.callvault.probe") == b"1"
PY
        rm -f "$f"
        die "the filesystem of $S3_HOME does not support user extended attributes, which versitygw's POSIX backend needs"
    fi
    rm -f "$f"
}

s3_running_pid() { read_pid versitygw; }

# A gateway started by an older deploy/ without keep-alive answers every request with
# "Connection: close", so each S3 call costs a new TCP connection: restart it.
s3_stale_flags() {
    [[ "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)" != *" --keep-alive "* ]]
}

s3_healthy() {
    # unauthenticated health endpoint (--health /health)
    local resp
    resp="$( (exec 3<>"/dev/tcp/$BIND_HOST/$S3_PORT" &&
        printf 'GET /health HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$BIND_HOST" "$S3_PORT" >&3 &&
        timeout 3 head -n1 <&3) 2>/dev/null || true)"
    [[ "$resp" == "HTTP/1.1 200"* ]]
}

s3_up() {
    local pid
    if pid="$(s3_running_pid)" && s3_stale_flags "$pid"; then
        log "restarting versitygw (S3) with keep-alive"
        stop_pid versitygw 15
    elif [ -n "$pid" ]; then
        ensure_port_free_or_ours "$S3_PORT" versitygw "$pid"
        return 0
    fi
    ensure_port_free_or_ours "$S3_PORT" versitygw
    s3_install
    mkdir -p "$S3_DATA" "$S3_VERSIONS"
    s3_check_xattr
    log "starting versitygw (S3) on $BIND_HOST:$S3_PORT"
    start_bg versitygw "$LOG_DIR/versitygw.log" \
        env ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$S3_SECRET_KEY" "$VGW_BIN" \
        --port "$BIND_HOST:$S3_PORT" --region "$S3_REGION" --health /health --keep-alive --quiet \
        posix --versioning-dir "$S3_VERSIONS" "$S3_DATA"
}

s3_wait() {
    local i
    wait_port "$S3_PORT" versitygw 30 versitygw
    for ((i = 0; i < 50; i++)); do
        s3_healthy && return 0
        sleep 0.2
    done
    die "versitygw accepts connections but its /health endpoint does not answer (see $LOG_DIR/versitygw.log)"
}

# The same store over https, for the secure profile: a second gateway over the same data
# directories, with the local CA's certificate.
s3_tls_up() {
    local pid
    if pid="$(read_pid versitygw-tls)"; then
        if port_open "$S3_TLS_PORT" && ! s3_stale_flags "$pid"; then
            ensure_port_free_or_ours "$S3_TLS_PORT" "versitygw (https)" "$pid"
            return 0
        fi
        stop_pid versitygw-tls 15 # started for another port
    fi
    ensure_port_free_or_ours "$S3_TLS_PORT" "versitygw (https)"
    tls_ensure
    log "starting versitygw (S3 over https) on $BIND_HOST:$S3_TLS_PORT"
    start_bg versitygw-tls "$LOG_DIR/versitygw-tls.log" \
        env ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$S3_SECRET_KEY" "$VGW_BIN" \
        --port "$BIND_HOST:$S3_TLS_PORT" --region "$S3_REGION" --health /health --keep-alive --quiet \
        --cert "$TLS_CERT" --key "$TLS_KEY" \
        posix --versioning-dir "$S3_VERSIONS" "$S3_DATA"
}

s3_tls_healthy() {
    "$HELPER_PY" - "$BIND_HOST" "$S3_TLS_PORT" "$TLS_CA" <<'PY' >/dev/null 2>&1
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[3])
with urllib.request.urlopen(f"https://{sys.argv[1]}:{sys.argv[2]}/health", context=context, timeout=3) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

s3_tls_wait() {
    local i
    wait_port "$S3_TLS_PORT" "versitygw (https)" 30 versitygw-tls
    for ((i = 0; i < 50; i++)); do
        s3_tls_healthy && return 0
        sleep 0.2
    done
    die "versitygw (https) does not answer /health with the local CA's certificate (see $LOG_DIR/versitygw-tls.log)"
}

s3_down() {
    stop_pid versitygw-tls 15
    stop_pid versitygw 15
}

s3_status() {
    local pid
    if pid="$(s3_running_pid)" && s3_healthy; then
        printf '%-11s up    %s:%s  pid %s\n' versitygw "$BIND_HOST" "$S3_PORT" "$pid"
        if pid="$(read_pid versitygw-tls)" && s3_tls_healthy; then
            printf '%-11s up    %s:%s  pid %s (https)\n' "" "$BIND_HOST" "$S3_TLS_PORT" "$pid"
        fi
    else
        printf '%-11s down  %s:%s\n' versitygw "$BIND_HOST" "$S3_PORT"
    fi
}

s3_reset() { rm -rf "$S3_HOME"; }
