#!/usr/bin/env bash
# Validate a Compose file as `docker compose config` does, without Docker: builds (once, cached
# by the sha256 of its sources) the small compose-go program in deploy/compose/check/ with the Go
# toolchain the native stack already needs, then runs it. See check/main.go for the rules.
#
#   deploy/compose/check.sh [--profile NAME]... [--image REF]... docker-compose.yml
#
# Prints the normalised project as JSON; exits 1 with one line per problem.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/check" && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/callvault/bin"
BIN="$CACHE/compose-check-$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)"

if [ ! -x "$BIN" ]; then
    command -v go >/dev/null || { echo "compose-check: needs Go (>= 1.24) on PATH" >&2; exit 2; }
    mkdir -p "$CACHE"
    tmp="$(mktemp "$BIN.XXXXXX")"
    if ! (cd "$SRC" && GOFLAGS=-trimpath go build -buildvcs=false -o "$tmp" .) >&2; then
        rm -f "$tmp"
        echo "compose-check: building $SRC failed" >&2
        exit 2
    fi
    mv -f "$tmp" "$BIN"
fi
exec "$BIN" "$@"
