#!/usr/bin/env bash
# Ensure the project's virtual environment .venv exists with callvault installed:
#   python3 -m venv .venv
#   .venv/bin/pip install --require-hashes -r requirements-dev.lock    (runtime + dev tools)
#   .venv/bin/pip install --require-hashes -r requirements-build.lock  (the pinned build backend)
#   .venv/bin/pip install --no-deps --no-build-isolation -e .
# Every package comes from a lock with hashes. (requirements.lock, the runtime dependencies
# alone, is what the container image installs.) Skipped when .venv/.locks.sha256 records the
# same sha256 of those locks + pyproject.toml (and .venv/bin/python still works).
# Usage: deploy/venv.sh [--force]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$DEPLOY_DIR/lib/common.sh"

VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.locks.sha256" # in the venv: worktrees sharing one .local have their own .venv
LOCK="$REPO_ROOT/requirements-dev.lock"
BUILD_LOCK="$REPO_ROOT/requirements-build.lock"
PYPROJECT="$REPO_ROOT/pyproject.toml"
PYTHON="${PYTHON:-python3}"

main() {
    local force=0
    [ "${1:-}" = "--force" ] && force=1
    local file
    for file in "$LOCK" "$BUILD_LOCK" "$PYPROJECT"; do
        [ -f "$file" ] || die "$(basename "$file") not found at $file"
    done
    ensure_local_dirs

    local want
    want="$(sha256_of "$LOCK" "$BUILD_LOCK" "$PYPROJECT")"
    if [ "$force" -eq 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
        && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi

    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating virtual environment .venv"
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV" >"$LOG_DIR/venv.log" 2>&1; then
            # Debian's python3 needs python3-venv for ensurepip
            if [ "$PYTHON" = python3 ] && [ "$(command -v python3)" = /usr/bin/python3 ]; then
                apt_install python3-venv
                rm -rf "$VENV"
                "$PYTHON" -m venv "$VENV" >"$LOG_DIR/venv.log" 2>&1 \
                    || die "python3 -m venv failed (see $LOG_DIR/venv.log)"
            else
                die "$PYTHON -m venv failed (see $LOG_DIR/venv.log)"
            fi
        fi
        # keep the venv out of git without touching the repo's .gitignore
        printf '*\n' >"$VENV/.gitignore"
    fi
    rm -f "$STAMP"
    for file in "$LOCK" "$BUILD_LOCK"; do
        log "installing locked dependencies into .venv ($(basename "$file"))"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
            --require-hashes -r "$file" >>"$LOG_DIR/venv.log" 2>&1 \
            || die "pip install --require-hashes -r $(basename "$file") failed (see $LOG_DIR/venv.log)"
    done
    log "installing callvault (editable) into .venv"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        --no-deps --no-build-isolation -e "$REPO_ROOT" >>"$LOG_DIR/venv.log" 2>&1 \
        || die "pip install --no-deps -e . failed (see $LOG_DIR/venv.log)"
    echo "$want" >"$STAMP"
}

main "$@"
