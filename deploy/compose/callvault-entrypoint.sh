#!/bin/sh
# Entrypoint of the callvault image: exports every CALLVAULT_* setting found as a file in
# $CALLVAULT_SECRETS_DIR (default /run/secrets/callvault; the file's name is the variable's
# name, its content the value), then runs the command. docker-compose.yml mounts the secrets
# volume written by deploy/compose/init-secrets.sh there, so keys never sit in the compose
# file, an env file or a process list. Without that directory the environment is used as is.
set -eu

dir="${CALLVAULT_SECRETS_DIR:-/run/secrets/callvault}"
if [ -d "$dir" ]; then
    for file in "$dir"/CALLVAULT_*; do
        [ -f "$file" ] || continue
        name="${file##*/}"
        case "$name" in
            *[!A-Z0-9_]*) echo "callvault-entrypoint: ignoring $file (not a variable name)" >&2 ;;
            *) export "$name=$(cat "$file")" ;;
        esac
    done
fi
exec "$@"
