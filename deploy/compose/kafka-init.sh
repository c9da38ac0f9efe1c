#!/bin/sh
# Run by the one-shot 'kafka-init' service (callvault's image) once Kafka listens: as the
# broker's administrator (PLAIN, over TLS), it creates the SCRAM users of every component with
# the passwords the 'setup' service generated, then applies the topic ACL plan
# (deploy/kafka/acl-plan.sh). Idempotent. Nobody else is a super user and no principal is
# anonymous: a component may do what the plan grants it and nothing more.
set -eu
dir=/run/secrets/kafka-init
export CALLVAULT_KAFKA_SECURITY_PROTOCOL=SASL_SSL CALLVAULT_KAFKA_SASL_MECHANISM=PLAIN \
    CALLVAULT_KAFKA_SASL_USERNAME=admin CALLVAULT_KAFKA_SASL_PASSWORD_FILE="$dir/admin" \
    CALLVAULT_KAFKA_CA_FILE="$dir/ca.pem"
users=""
for user in callvault console telephony compliance dsr-portal; do
    users="$users $user=$dir/$user"
done
tries=0
# shellcheck disable=SC2086 # one USER=FILE word each
until python /etc/callvault/kafka/scram_users.py "$CALLVAULT_KAFKA_BOOTSTRAP" $users; do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || { echo "kafka-init: Kafka did not accept the administrator" >&2; exit 1; }
    sleep 2
done
sh /etc/callvault/kafka/acl-plan.sh | python /etc/callvault/kafka/apply_acls.py
echo "kafka-init: SCRAM users and the ACL plan applied"
