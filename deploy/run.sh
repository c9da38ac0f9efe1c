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

# Demo audio is real speech: espeak-ng through sox (WAV, FLAC, Ogg/Opus, MP3). Without them
# the demo falls back to synthesized tones, so a failed install only makes it less lifelike.
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
    echo "[run] installing espeak-ng and sox for demo speech"
    { apt-get install -y -q espeak-ng sox libsox-fmt-all >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 \
             && apt-get install -y -q espeak-ng sox libsox-fmt-all >/dev/null 2>&1; }; } \
        || echo "[run] could not install espeak-ng/sox; demo calls use synthesized tones"
fi

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
