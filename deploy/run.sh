#!/usr/bin/env bash
# `make run`: callvault on the native local stack, with a tour of the whole lifecycle.
# Expects `make up`; migrates with the tour's demo tenant, starts the worker and the console,
# tells the lifecycle tour, then publishes demo traffic until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
set -a; . .local/stack.env; set +a
export CALLVAULT_LOG_FORMAT="${CALLVAULT_LOG_FORMAT:-console}"
LOG=.local/logs/worker.log
mkdir -p .local/logs

# Demo audio is real speech: espeak-ng through sox (WAV, FLAC, Ogg/Opus, MP3). Without them
# the demo falls back to synthesized tones, so a failed install only makes it less lifelike.
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
    echo "[run] installing espeak-ng and sox for demo speech"
    { apt-get install -y -q espeak-ng sox libsox-fmt-all >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 \
             && apt-get install -y -q espeak-ng sox libsox-fmt-all >/dev/null 2>&1; }; } \
        || echo "[run] could not install espeak-ng/sox; demo calls use synthesized tones"
fi

# The tour's demo tenant keeps recordings one minute, so their purge happens while you watch.
# The policy in force is the one `callvault migrate` recorded; the worker refuses another.
export CALLVAULT_RETENTION_TENANTS="${CALLVAULT_RETENTION_TENANTS:-demo-short=PT1M}"
# The letters to callers name the shop whose notice the demo follows (docs/examples/letters).
CALLVAULT_CONTROLLER="${CALLVAULT_CONTROLLER:-$(cat docs/examples/letters/controller.json)}"
export CALLVAULT_CONTROLLER
# the only command given the schema owner's URL; everything else runs as callvault_app
CALLVAULT_DATABASE_ADMIN_URL="$CALLVAULT_PG_OWNER_URL" .venv/bin/callvault migrate >/dev/null

.venv/bin/callvault worker >>"$LOG" 2>&1 &
WORKER=$!
.venv/bin/callvault serve >>.local/logs/serve.log 2>&1 &
SERVE=$!
trap 'kill -TERM $WORKER $SERVE 2>/dev/null; wait $WORKER $SERVE 2>/dev/null; echo "callvault stopped"' EXIT INT TERM

# Demo console accounts (a user that exists already is left as it is).
for account in demo-dpo:dpo demo-qa:qa demo-complaints:complaints; do
    printf 'callvault-demo\n' | .venv/bin/callvault user add "${account%%:*}" --role "${account##*:}" --tenant '*' \
        >/dev/null 2>&1 || true
done

ready() { curl -fs "http://127.0.0.1:$CALLVAULT_METRICS_PORT/metrics" 2>/dev/null | grep -q '^callvault_worker_ready 1'; }
for _ in $(seq 1 120); do ready && break; kill -0 $WORKER 2>/dev/null || { tail -5 "$LOG"; exit 1; }; sleep 0.5; done
for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:${CALLVAULT_HTTP_PORT:-8080}/healthz" >/dev/null 2>&1 && break; sleep 0.5; done

echo "callvault is running (worker pid $WORKER, console pid $SERVE; logs in .local/logs)."
echo "The tour: the whole lifecycle of recordings, as it happens (about a minute)."
.venv/bin/callvault demo --lifecycle

cat <<EOT

Where to look
  console         http://127.0.0.1:${CALLVAULT_HTTP_PORT:-8080}/  users demo-dpo, demo-qa, demo-complaints
                  (password callvault-demo): search a customer's number in any notation, listen
                  for a purpose, see the access log (demo-dpo)
  Prometheus      $CALLVAULT_PROMETHEUS_URL  (try: callvault_purge_lag_seconds_bucket,
                  callvault_retention_overdue_recordings)
  alerts          ${CALLVAULT_ALERTMANAGER_URL:-Alertmanager}  (rules: deploy/prometheus/rules/, runbooks: docs/runbooks.md)
  Grafana         import deploy/grafana/dashboards/callvault.json (pick the Prometheus above)
  worker metrics  http://127.0.0.1:$CALLVAULT_METRICS_PORT/metrics
  status          set -a; . .local/stack.env; set +a; .venv/bin/callvault status
  requests        .venv/bin/callvault dsr list; .venv/bin/callvault deadletter list
Publishing demo traffic (${DEMO_CALLS:-40} calls); Ctrl-C stops callvault.
EOT
.venv/bin/callvault demo --count "${DEMO_CALLS:-40}" --rate "${DEMO_RATE:-2}"
.venv/bin/callvault status || true
wait $WORKER
