#!/bin/sh
# render-rules.sh SOURCE_DIR DEST_DIR: the alert rules of SOURCE_DIR (*.yml) with their two
# parameters filled in, written to DEST_DIR (created). POSIX sh and sed only: the native stack
# (deploy/lib/prometheus.sh), compose's one-shot 'prometheus-rules' service (alpine) and the
# tests run it; the Helm chart makes the same substitution in its PrometheusRule.
#
#   CALLVAULT_PROMETHEUS_JOB  the `job` label of callvault's workers (default: callvault)
#   CALLVAULT_RUNBOOK_URL     the absolute URL of docs/runbooks.md as the people who answer
#                             alerts reach it (http, https or file); each alert links a section
set -eu

[ "$#" -eq 2 ] || { echo "usage: $0 SOURCE_DIR DEST_DIR" >&2; exit 2; }
src="$1"
dest="$2"
job="${CALLVAULT_PROMETHEUS_JOB:-callvault}"
url="${CALLVAULT_RUNBOOK_URL:-}"

case "$job" in
    "" | *[!A-Za-z0-9_.:-]*)
        echo "render-rules: CALLVAULT_PROMETHEUS_JOB must be a label value of letters, digits, '_', '.', ':' or '-'" >&2
        exit 1
        ;;
esac
case "$url" in
    http://?* | https://?* | file:///?*) ;;
    *)
        echo "render-rules: CALLVAULT_RUNBOOK_URL must be the absolute (http, https or file) URL of docs/runbooks.md" >&2
        exit 1
        ;;
esac
case "$url" in
    *[[:space:]\"\'\\\|\&#]*)
        echo "render-rules: CALLVAULT_RUNBOOK_URL must not contain spaces, quotes, backslashes, '|', '&' or '#'" >&2
        exit 1
        ;;
esac

mkdir -p "$dest"
for rules in "$src"/*.yml; do
    [ -f "$rules" ] || continue
    out="$dest/${rules##*/}"
    sed -e "s|@JOB@|$job|g" -e "s|@RUNBOOK_URL@|$url|g" "$rules" >"$out.tmp"
    mv -f "$out.tmp" "$out"
done
