#!/bin/sh
# Run by the one-shot 'setup' service of docker-compose.yml (image alpine) before anything
# else starts. Idempotent: a secret is generated once, on the first start, and kept in its
# volume; nothing secret is ever read from the repository.
#
# One volume per consumer, so that each container mounts only the secrets it needs:
#   $SECRETS_ROOT/callvault  CALLVAULT_* files for 'migrate' and 'worker' (uid 10001): the
#                            master, hash and signing keys, the database URL, the S3 keys
#   $SECRETS_ROOT/postgres   postgres_password (uid 999, the image's postgres user)
#   $SECRETS_ROOT/s3         s3_access_key, s3_secret_key (root: versitygw, MinIO, mc)
#   $SECRETS_ROOT/grafana    grafana_admin_password (uid 472, the image's grafana user)
# The copies in callvault/ are derived from postgres/ and s3/ on every run, so they agree.
#
# It also renders Alertmanager's configuration from deploy/prometheus/alertmanager.yml with
# the receiver CALLVAULT_ALERT_WEBHOOK_URL into $ALERTMANAGER_DIR.
#
# To bring your own keys, write the files into the volumes before the first start (or replace
# them and restart): a file that exists is never overwritten.
set -eu

: "${SECRETS_ROOT:=/secrets}"
: "${ALERTMANAGER_TEMPLATE:=/etc/callvault/alertmanager.template.yml}"
: "${ALERTMANAGER_DIR:=/config/alertmanager}"
: "${CALLVAULT_ALERT_WEBHOOK_URL:=http://127.0.0.1:19095/alerts}"
: "${POSTGRES_USER:=callvault}"
: "${POSTGRES_DB:=callvault}"
: "${POSTGRES_HOST:=postgres:5432}"
: "${CALLVAULT_UID:=10001}"
: "${POSTGRES_UID:=999}"
: "${GRAFANA_UID:=472}"

# random_key: base64 of 32 random bytes (callvault's keys)
random_key() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
# random_word N: N random characters that need no quoting in a URL or a shell
random_word() { tr -dc 'A-Za-z0-9' </dev/urandom | head -c "$1"; }

# keep FILE GENERATOR...: creates FILE from the generator's output unless it exists
keep() {
    file="$1"
    shift
    if [ ! -s "$file" ]; then
        (umask 077 && "$@" >"$file.tmp" && mv "$file.tmp" "$file")
        echo "setup: generated $file"
    fi
}

# derive FILE VALUE: (re)writes FILE with VALUE when it differs
derive() {
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
        (umask 077 && printf '%s' "$2" >"$1.tmp" && mv "$1.tmp" "$1")
    fi
}

# own UID FILE...: the consumer may read its files, nobody else
own() {
    uid="$1"
    shift
    chown "$uid:$uid" "$@"
    chmod 0400 "$@"
}

cv="$SECRETS_ROOT/callvault"
pg="$SECRETS_ROOT/postgres"
s3="$SECRETS_ROOT/s3"
gf="$SECRETS_ROOT/grafana"
mkdir -p "$cv" "$pg" "$s3" "$gf"

keep "$cv/CALLVAULT_MASTER_KEY" random_key
keep "$cv/CALLVAULT_HASH_KEY" random_key
keep "$cv/CALLVAULT_SIGNING_KEY" random_key
keep "$pg/postgres_password" random_word 32
keep "$s3/s3_access_key" random_word 20
keep "$s3/s3_secret_key" random_word 40
keep "$gf/grafana_admin_password" random_word 24

derive "$cv/CALLVAULT_DATABASE_URL" \
    "postgresql://$POSTGRES_USER:$(cat "$pg/postgres_password")@$POSTGRES_HOST/$POSTGRES_DB"
derive "$cv/CALLVAULT_S3_ACCESS_KEY" "$(cat "$s3/s3_access_key")"
derive "$cv/CALLVAULT_S3_SECRET_KEY" "$(cat "$s3/s3_secret_key")"

own "$CALLVAULT_UID" "$cv"/CALLVAULT_*
own "$POSTGRES_UID" "$pg/postgres_password"
own 0 "$s3/s3_access_key" "$s3/s3_secret_key"
own "$GRAFANA_UID" "$gf/grafana_admin_password"

case "$CALLVAULT_ALERT_WEBHOOK_URL" in
    http://* | https://*) ;;
    *)
        echo "setup: CALLVAULT_ALERT_WEBHOOK_URL must be an http(s) URL" >&2
        exit 1
        ;;
esac
case "$CALLVAULT_ALERT_WEBHOOK_URL" in
    *[[:space:]\"\\]*)
        echo "setup: CALLVAULT_ALERT_WEBHOOK_URL must not contain spaces, quotes or backslashes" >&2
        exit 1
        ;;
esac
mkdir -p "$ALERTMANAGER_DIR"
escaped="$(printf '%s' "$CALLVAULT_ALERT_WEBHOOK_URL" | sed 's/[&|]/\\&/g')"
sed "s|@WEBHOOK_URL@|$escaped|" "$ALERTMANAGER_TEMPLATE" >"$ALERTMANAGER_DIR/alertmanager.yml"
chmod 0444 "$ALERTMANAGER_DIR/alertmanager.yml"
echo "setup: secrets ready; alerts go to $CALLVAULT_ALERT_WEBHOOK_URL"
