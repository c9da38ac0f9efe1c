#!/bin/sh
# Run by the one-shot 's3-users' service (the versitygw image) once the gateway answers: an S3
# user of its own for callvault's workers, its console and the telephony connectors, with the
# secrets the 'setup' service generated (versitygw's IAM, `--iam-dir`). Their rights come from
# bucket policies that 's3-policies' sets once `migrate` has made the buckets; the root keys stay
# with `migrate` and this job. Idempotent.
set -eu
dir=/run/secrets/s3-users
admin() {
    /app/versitygw admin --access "$(cat "$dir/s3_access_key")" --secret "$(cat "$dir/s3_secret_key")" \
        --region "${S3_REGION:-eu-central-1}" --endpoint-url "${S3_URL:-http://versitygw:7070}" "$@"
}
for user in callvault-worker callvault-console telephony; do
    secret="$(cat "$dir/$user")"
    admin create-user --access "$user" --secret "$secret" --role user >/dev/null 2>&1 \
        || admin update-user --access "$user" --secret "$secret" >/dev/null
done
echo "s3-users: callvault-worker, callvault-console, telephony"
