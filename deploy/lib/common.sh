# shellcheck shell=bash
# Shared helpers for deploy/stack.sh. Sourced, never executed.
# Expects: set -euo pipefail, and DEPLOY_DIR set by the caller.

REPO_ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
# CALLVAULT_LOCAL_DIR lets a second checkout (a git worktree) manage the same running stack.
LOCAL_DIR="${CALLVAULT_LOCAL_DIR:-$REPO_ROOT/.local}"
RUN_DIR="$LOCAL_DIR/run"        # pid files
LOG_DIR="$LOCAL_DIR/logs"       # service logs
BIN_DIR="$LOCAL_DIR/bin"        # built/downloaded binaries (kept by reset)
SECRETS_DIR="$LOCAL_DIR/secrets"
STACK_ENV="$LOCAL_DIR/stack.env"
BIND_HOST=127.0.0.1

# Fixed ports of the native stack.
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
KAFKA_SECURE_PORT=19096    # SASL_SSL (SCRAM-SHA-512, PLAIN) with topic ACLs: the secure profile
PG_PORT=15432
S3_PORT=17070
S3_TLS_PORT=17072          # the same store over https (the local CA's certificate)
PROM_PORT=19090
AM_PORT=19094              # Alertmanager (web and API)
AM_PLACEHOLDER_PORT=19095  # the default webhook receiver's address: nothing listens there
METRICS_PORT=9400

# Interpreter for the small stdlib-only helpers: Debian's own when present
# (version-manager shims such as pyenv's add ~0.2 s per call).
if [ -x /usr/bin/python3 ]; then HELPER_PY=/usr/bin/python3; else HELPER_PY=python3; fi

log()  { printf '[stack] %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

ensure_local_dirs() {
    mkdir -p "$LOCAL_DIR" "$RUN_DIR" "$LOG_DIR" "$BIN_DIR" "$SECRETS_DIR"
    # Make .local ignored by git without touching the repo's own .gitignore.
    [ -f "$LOCAL_DIR/.gitignore" ] || printf '*\n' >"$LOCAL_DIR/.gitignore"
}

# ---------------------------------------------------------------- apt
_APT_UPDATED=0
# apt_install PKG... : installs the Debian packages that are not installed yet.
# Runs 'apt-get update' at most once per invocation of the script.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "need Debian packages ${missing[*]} but apt-get is not available"
    [ "$(id -u)" -eq 0 ] || die "need Debian packages ${missing[*]}: run as root or install them first"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -q >"$LOG_DIR/apt.log" 2>&1 || die "apt-get update failed (see $LOG_DIR/apt.log)"
        _APT_UPDATED=1
    fi
    log "installing Debian packages: ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 \
        || die "apt-get install ${missing[*]} failed (see $LOG_DIR/apt.log)"
}

# ---------------------------------------------------------------- processes
pid_file() { echo "$RUN_DIR/$1.pid"; }

# read_pid NAME -> prints the pid if the pid file exists and that process is alive
# and is ours (its command line names .local).
read_pid() {
    local f pid
    f="$(pid_file "$1")"
    [ -f "$f" ] || return 1
    pid="$(head -n1 "$f" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid: our processes all name a path under .local
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)" == *"$LOCAL_DIR"* ]] || return 1
    echo "$pid"
}

# stop_pid NAME [TIMEOUT_SECONDS]: SIGTERM, then SIGKILL after the timeout.
stop_pid() {
    local name="$1" timeout="${2:-20}" pid i
    if ! pid="$(read_pid "$name")"; then
        rm -f "$(pid_file "$name")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) did not stop after ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pid_file "$name")"
}

# start_bg NAME LOGFILE CMD...: starts CMD detached with nohup, records its pid. The daemon
# must not inherit the `up` lock (fd 9): it would hold it for as long as it runs.
start_bg() {
    local name="$1" logfile="$2"
    shift 2
    nohup setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file "$name")"
}

# ---------------------------------------------------------------- ports
port_open() { (exec 3<>"/dev/tcp/$BIND_HOST/$1") 2>/dev/null; }

# port_pids PORT -> pids listening on the TCP port (may be empty).
port_pids() {
    ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

# is_descendant PID ANCESTOR: true when PID is ANCESTOR or one of its descendants.
is_descendant() {
    local pid="$1" anc="$2" i
    for ((i = 0; i < 20; i++)); do
        [ "$pid" = "$anc" ] && return 0
        [ -z "$pid" ] || [ "$pid" -le 1 ] && return 1
        pid="$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)"
    done
    return 1
}

# ensure_port_free_or_ours PORT SERVICE [OURPID]: dies with a clear message when
# PORT is held by a process that is not OURPID (or a child of it).
ensure_port_free_or_ours() {
    local port="$1" svc="$2" ours="${3:-}" p foreign=()
    port_open "$port" || return 0
    for p in $(port_pids "$port"); do
        if [ -n "$ours" ] && is_descendant "$p" "$ours"; then continue; fi
        foreign+=("$p")
    done
    if [ -z "$ours" ] || [ "${#foreign[@]}" -gt 0 ]; then
        local desc=""
        for p in "${foreign[@]}"; do desc+=" pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120))"; done
        die "port $BIND_HOST:$port needed by $svc is already in use by a process not started by this stack:${desc:- unknown process}. Stop it or free the port."
    fi
}

# wait_port PORT SERVICE TIMEOUT PIDNAME: waits until the port accepts connections.
wait_port() {
    local port="$1" svc="$2" timeout="$3" name="$4" i
    for ((i = 0; i < timeout * 5; i++)); do
        port_open "$port" && return 0
        if ! read_pid "$name" >/dev/null; then
            die "$svc exited during start-up; last log lines:
$(tail -n 25 "$LOG_DIR/$name.log" 2>/dev/null)"
        fi
        sleep 0.2
    done
    die "$svc did not open port $port within ${timeout}s (see $LOG_DIR/$name.log)"
}

# ---------------------------------------------------------------- go tools
# Binaries built from Go modules are cached per version here, so that reset and fresh clones
# (and every worktree) reuse them, and linked into $BIN_DIR.
GO_CACHE_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/callvault/bin"

# go_install_cached NAME VERSION PACKAGE [LDFLAGS]: `go install PACKAGE@VERSION` once, cached
# as NAME-VERSION and linked as $BIN_DIR/NAME. Prints the cached binary's path.
go_install_cached() {
    local name="$1" version="$2" package="$3" ldflags="${4:-}" bin tmp
    bin="$GO_CACHE_BIN/$name-$version"
    if [ ! -x "$bin" ]; then
        command -v go >/dev/null || die "$name $version must be built with Go, and 'go' is not on PATH"
        log "building $name $version with 'go install' (first time only, a few minutes)"
        mkdir -p "$GO_CACHE_BIN" "$LOG_DIR"
        tmp="$(mktemp -d "$GO_CACHE_BIN.tmp.XXXXXX")"
        if ! GOBIN="$tmp" GOFLAGS="-trimpath -buildvcs=false" go install -ldflags="-s -w $ldflags" "$package@$version" \
            >"$LOG_DIR/$name-build.log" 2>&1; then
            rm -rf "$tmp"
            die "go install $package@$version failed (see $LOG_DIR/$name-build.log)"
        fi
        mv -f "$tmp/$(basename "$package")" "$bin"
        rm -rf "$tmp"
    fi
    mkdir -p "$BIN_DIR"
    ln -sfn "$bin" "$BIN_DIR/$name"
    echo "$bin"
}

# ---------------------------------------------------------------- misc
# remembered VALUE FILE DEFAULT: prints VALUE and keeps it in FILE for later runs when it is
# given, else the value kept in FILE, else DEFAULT (settings given once to `up`).
remembered() {
    if [ -n "$1" ]; then
        mkdir -p "$(dirname "$2")"
        printf '%s\n' "$1" >"$2"
        printf '%s\n' "$1"
    elif [ -s "$2" ]; then
        head -n1 "$2"
    else
        printf '%s\n' "$3"
    fi
}

sha256_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# secret NAME -> prints base64 of 32 random bytes, generated once and then reused.
secret() {
    local f="$SECRETS_DIR/$1"
    if [ ! -s "$f" ]; then
        (umask 077 && head -c 32 /dev/urandom | base64 -w0 >"$f")
    fi
    cat "$f"
}
