#!/bin/sh
# Run by the 'minio-init' service of docker-compose.yml (image minio/mc). Idempotent.
# Creates the buckets callvault expects; the vault bucket gets object lock (which
# implies versioning) and a lifecycle rule as retention backstop:
# P1Y retention + 30 days margin = 395 days, then non-current versions go 1 day later.
set -eu

: "${S3_URL:=http://minio:9000}"
: "${VAULT_BUCKET:=callvault-vault}"
: "${EXPORT_BUCKET:=callvault-exports}"
: "${LANDING_BUCKET:=callvault-landing}"
: "${S3_REGION:=eu-central-1}"

i=0
until mc alias set local "$S3_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then
    echo "minio-init: MinIO at $S3_URL not reachable" >&2
    exit 1
  fi
  sleep 1
done

mc mb --ignore-existing --with-lock --region "$S3_REGION" "local/$VAULT_BUCKET"
mc version enable "local/$VAULT_BUCKET"
mc ilm import "local/$VAULT_BUCKET" </etc/callvault/vault-lifecycle.json
mc mb --ignore-existing --region "$S3_REGION" "local/$EXPORT_BUCKET"
mc mb --ignore-existing --region "$S3_REGION" "local/$LANDING_BUCKET"

mc version info "local/$VAULT_BUCKET"
mc retention info --default "local/$VAULT_BUCKET" || true
mc ilm rule ls "local/$VAULT_BUCKET"
echo "minio-init: buckets ready"
