#!/bin/sh
# Run by the one-shot 'setup' service of docker-compose.yml (callvault's image, as root) before
# anything else starts. Idempotent: a secret is generated once, on the first start, into the
# volume only 'setup' mounts ($SECRETS_ROOT/setup), and each consumer's volume gets a copy of
# what that consumer uses - nothing more - on every run, so the copies always agree:
#
#   migrate    the database URLs of callvault's role and of the schema owner, the S3 root
#              keys (buckets, their policies), the master, hash and signing keys, the Kafka
#              password of `callvault`                                              (uid 10001)
#   worker     callvault's role, the S3 user callvault-worker, the three keys, `callvault`
#   console    callvault's role, the S3 user callvault-console, the master and hash keys,
#              the signing key's public half only, the Kafka password of `console` (uid 10001)
#   postgres   the superuser's, the owner's and callvault's role's passwords         (uid 999)
#   s3         the S3 root keys (versitygw, MinIO)                                  (root)
#   s3-users   the root keys and the S3 users' secrets, to make the users           (root)
#   handout    for the systems outside: the telephony, compliance and DSR portal
#              principals' Kafka passwords, the telephony S3 user, the CA        (nobody mounts it)
#   kafka      the broker administrator's password, its TLS key and certificate    (uid 1000)
#   kafka-init the administrator's and every component's Kafka password, the CA    (uid 10001)
#   grafana    the admin password                                                   (uid 472)
# The callvault volumes hold CALLVAULT_* files (the image's entrypoint exports them) and the
# CA of the broker's certificate (kafka-ca.pem). Connectors run elsewhere: they get the
# telephony password and the CA only (in kafka-init here, for an operator to hand out).
#
# It also renders Alertmanager's configuration from deploy/prometheus/alertmanager.yml with the
# receiver CALLVAULT_ALERT_WEBHOOK_URL into $ALERTMANAGER_DIR.
#
# To bring your own keys, write the files into the setup volume before the first start (or
# replace them and restart): a file that exists is never overwritten.
set -eu

: "${SECRETS_ROOT:=/secrets}"
: "${ALERTMANAGER_TEMPLATE:=/etc/callvault/alertmanager.template.yml}"
: "${ALERTMANAGER_DIR:=/config/alertmanager}"
: "${CALLVAULT_ALERT_WEBHOOK_URL:=http://127.0.0.1:19095/alerts}"
: "${POSTGRES_DB:=callvault}"
: "${POSTGRES_HOST:=postgres:5432}"
: "${CALLVAULT_UID:=10001}"
: "${POSTGRES_UID:=999}"
: "${KAFKA_UID:=1000}"
: "${GRAFANA_UID:=472}"
: "${PYTHON:=python3}"
TOOLS="$(dirname "$0")"

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

# put FILE VALUE: (re)writes FILE with VALUE when it differs
put() {
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
        (umask 077 && printf '%s' "$2" >"$1.tmp" && mv "$1.tmp" "$1")
    fi
}

# own UID DIR: the consumer may read its files, nobody else
own() {
    chown -R "$1:$1" "$2"
    chmod 0500 "$2"
    find "$2" -type f -exec chmod 0400 {} +
}

origin="$SECRETS_ROOT/setup"
for dir in setup migrate worker console postgres s3 s3-users kafka kafka-init handout grafana; do
    mkdir -p "$SECRETS_ROOT/$dir"
    chmod 0700 "$SECRETS_ROOT/$dir"
done

keep "$origin/master_key" random_key
keep "$origin/hash_key" random_key
keep "$origin/signing_key" random_key
for name in postgres_password owner_password app_password s3_access_key; do
    keep "$origin/$name" random_word 24
done
keep "$origin/s3_secret_key" random_word 40
for user in callvault-worker callvault-console telephony; do
    keep "$origin/s3-$user" random_word 40
done
for principal in admin callvault console telephony compliance dsr-portal; do
    keep "$origin/kafka-$principal" random_word 32
done
keep "$origin/grafana_admin_password" random_word 24
"$PYTHON" "$TOOLS/make_tls.py" "$origin/tls"
value() { cat "$origin/$1"; }

public_half="$("$PYTHON" -c '
import base64, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
seed = base64.b64decode(sys.argv[1])
print(base64.b64encode(Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()).decode())
' "$(value signing_key)")"
app_url="postgresql://callvault_app:$(value app_password)@$POSTGRES_HOST/$POSTGRES_DB"
owner_url="postgresql://callvault:$(value owner_password)@$POSTGRES_HOST/$POSTGRES_DB"

# callvault's containers: CALLVAULT_* files
callvault_files() { # DIR KAFKA_PRINCIPAL S3_USER (root: the root keys)
    put "$1/CALLVAULT_DATABASE_URL" "$app_url"
    if [ "$3" = root ]; then
        put "$1/CALLVAULT_S3_ACCESS_KEY" "$(value s3_access_key)"
        put "$1/CALLVAULT_S3_SECRET_KEY" "$(value s3_secret_key)"
    else
        put "$1/CALLVAULT_S3_ACCESS_KEY" "$3"
        put "$1/CALLVAULT_S3_SECRET_KEY" "$(value "s3-$3")"
    fi
    put "$1/CALLVAULT_MASTER_KEY" "$(value master_key)"
    put "$1/CALLVAULT_HASH_KEY" "$(value hash_key)"
    put "$1/CALLVAULT_KAFKA_SASL_PASSWORD" "$(value "kafka-$2")"
    put "$1/kafka-ca.pem" "$(cat "$origin/tls/ca.pem")"
}
callvault_files "$SECRETS_ROOT/migrate" callvault root
callvault_files "$SECRETS_ROOT/worker" callvault callvault-worker
for dir in migrate worker; do
    put "$SECRETS_ROOT/$dir/CALLVAULT_SIGNING_KEY" "$(value signing_key)"
done
put "$SECRETS_ROOT/migrate/CALLVAULT_DATABASE_ADMIN_URL" "$owner_url"
callvault_files "$SECRETS_ROOT/console" console callvault-console
put "$SECRETS_ROOT/console/CALLVAULT_SIGNING_PUBLIC_KEY" "$public_half"

for name in postgres_password owner_password app_password; do
    put "$SECRETS_ROOT/postgres/$name" "$(value "$name")"
done
put "$SECRETS_ROOT/s3/s3_access_key" "$(value s3_access_key)"
put "$SECRETS_ROOT/s3/s3_secret_key" "$(value s3_secret_key)"
put "$SECRETS_ROOT/s3-users/s3_access_key" "$(value s3_access_key)"
put "$SECRETS_ROOT/s3-users/s3_secret_key" "$(value s3_secret_key)"
for user in callvault-worker callvault-console telephony; do
    put "$SECRETS_ROOT/s3-users/$user" "$(value "s3-$user")"
done
for principal in telephony compliance dsr-portal; do
    put "$SECRETS_ROOT/handout/kafka-$principal" "$(value "kafka-$principal")"
done
put "$SECRETS_ROOT/handout/s3-telephony" "$(value s3-telephony)"
put "$SECRETS_ROOT/handout/kafka-ca.pem" "$(cat "$origin/tls/ca.pem")"
put "$SECRETS_ROOT/kafka/admin_password" "$(value kafka-admin)"
put "$SECRETS_ROOT/kafka/server.pem" "$(cat "$origin/tls/kafka.key" "$origin/tls/kafka.pem")"
put "$SECRETS_ROOT/kafka/ca.pem" "$(cat "$origin/tls/ca.pem")"
put "$SECRETS_ROOT/kafka-init/admin" "$(value kafka-admin)"
for principal in callvault console telephony compliance dsr-portal; do
    put "$SECRETS_ROOT/kafka-init/$principal" "$(value "kafka-$principal")"
done
put "$SECRETS_ROOT/kafka-init/ca.pem" "$(cat "$origin/tls/ca.pem")"
put "$SECRETS_ROOT/grafana/grafana_admin_password" "$(value grafana_admin_password)"

own 0 "$origin"
own "$CALLVAULT_UID" "$SECRETS_ROOT/migrate"
own "$CALLVAULT_UID" "$SECRETS_ROOT/worker"
own "$CALLVAULT_UID" "$SECRETS_ROOT/console"
own "$POSTGRES_UID" "$SECRETS_ROOT/postgres"
own 0 "$SECRETS_ROOT/s3"
own 0 "$SECRETS_ROOT/s3-users"
own 0 "$SECRETS_ROOT/handout"
own "$KAFKA_UID" "$SECRETS_ROOT/kafka"
own "$CALLVAULT_UID" "$SECRETS_ROOT/kafka-init"
own "$GRAFANA_UID" "$SECRETS_ROOT/grafana"

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
