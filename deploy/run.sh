#!/usr/bin/env bash
# `make run`: the workers and demo telephony traffic on the native local stack.
# Expects `make migrate` (which brings the stack up) to have run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
set -a; . .local/stack.env; set +a
export CALLVAULT_LOG_FORMAT="${CALLVAULT_LOG_FORMAT:-console}"
LOG=.local/logs/worker.log
mkdir -p .local/logs

.venv/bin/callvault worker >>"$LOG" 2>&1 &
WORKER=$!
trap 'kill -TERM $WORKER 2>/dev/null; wait $WORKER 2>/dev/null; echo "workers stopped"' EXIT INT TERM

for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$CALLVAULT_METRICS_PORT/metrics" >/dev/null 2>&1 && break
    sleep 1
done

cat <<EOT
callvault is running (worker pid $WORKER, log $LOG).
  Prometheus      $CALLVAULT_PROMETHEUS_URL   (try: callvault_recordings_stored_total)
  worker metrics  http://127.0.0.1:$CALLVAULT_METRICS_PORT/metrics
  status screen   set -a; . .local/stack.env; set +a; .venv/bin/callvault status
Publishing demo traffic (${DEMO_CALLS:-40} calls); Ctrl-C stops the workers.
EOT
.venv/bin/callvault demo --count "${DEMO_CALLS:-40}" --rate "${DEMO_RATE:-2}"
.venv/bin/callvault status || true
wait $WORKER
