#!/bin/sh
# callvault's topic ACL plan, as Apache Kafka `kafka-acls.sh` commands (one per line).
#
# ACLs are what make an event's word trustworthy: only the DSR portal (and the DPO, signed in to
# the web console) may write dsr.requests (so `identity_verified: true` means the portal or a
# DPO verified the person), only compliance may write holds.commands, only
# the telephony system (its connectors and the cloud webhooks) calls.ended. Everyone else is
# refused by the broker (with the standard authorizer, a principal without an ACL may do
# nothing). Each component has its own principal: the workers (callvault: they write no input),
# the web console (console: the DPO's audited requests only; its holds are applied in its own
# database transaction, never through Kafka; never calls, never a read),
# the telephony connectors and webhooks (telephony).
#
#   deploy/kafka/acl-plan.sh            print the plan (review it)
#   deploy/kafka/acl-plan.sh | sh       apply it with Kafka's own tools (kafka-acls.sh on
#                                       PATH; connection in $KAFKA_ADMIN_CONFIG)
#   deploy/kafka/acl-plan.sh | .venv/bin/python deploy/kafka/apply_acls.py
#                                       apply it with kafka-python (what the local stack and the
#                                       tests do), connecting as CALLVAULT_KAFKA_* says
#   deploy/kafka/acl-plan.sh --remove   the same commands with --remove: take the plan back
#
# Names come from the environment, with these defaults: principals CALLVAULT_PRINCIPAL
# (callvault), CONSOLE_PRINCIPAL (console, for `callvault serve`), TELEPHONY_PRINCIPAL
# (telephony), DSR_PORTAL_PRINCIPAL (dsr-portal), COMPLIANCE_PRINCIPAL (compliance),
# REPLAY_PRINCIPAL (callvault-replay); the DSR portal's consumer group DSR_PORTAL_GROUP
# (dsr-portal, a prefix); topics and consumer group as callvault reads them
# (CALLVAULT_TOPIC_<NAME>, CALLVAULT_APP_ID); ALLOW_DEADLETTER_REPLAY=1 adds the grants at the
# end, for REPLAY_PRINCIPAL only.
set -eu

action=--add
[ "${1:-}" = --remove ] && action="--remove --force"

cv="User:${CALLVAULT_PRINCIPAL:-callvault}"
console="User:${CONSOLE_PRINCIPAL:-console}"
replay="User:${REPLAY_PRINCIPAL:-callvault-replay}"
telephony="User:${TELEPHONY_PRINCIPAL:-telephony}"
portal="User:${DSR_PORTAL_PRINCIPAL:-dsr-portal}"
compliance="User:${COMPLIANCE_PRINCIPAL:-compliance}"
portal_group="${DSR_PORTAL_GROUP:-dsr-portal}"
app_id="${CALLVAULT_APP_ID:-callvault}"
calls="${CALLVAULT_TOPIC_CALLS_ENDED:-calls.ended}"
requests="${CALLVAULT_TOPIC_DSR_REQUESTS:-dsr.requests}"
holds="${CALLVAULT_TOPIC_HOLDS_COMMANDS:-holds.commands}"
stored="${CALLVAULT_TOPIC_RECORDINGS_STORED:-recordings.stored}"
due="${CALLVAULT_TOPIC_RETENTION_DUE:-retention.due}"
purged="${CALLVAULT_TOPIC_RECORDINGS_PURGED:-recordings.purged}"
results="${CALLVAULT_TOPIC_DSR_RESULTS:-dsr.results}"
deadletter="${CALLVAULT_TOPIC_DEADLETTER:-callvault.deadletter}"
audit="${CALLVAULT_TOPIC_AUDIT_CHECKPOINTS:-callvault.audit}"

# A principal with a job of its own may not share it: the replay operator's principal (which
# may write every input) is never the workers', the console's or the telephony system's.
for other in "$cv" "$console" "$telephony" "$portal" "$compliance"; do
    if [ "$replay" = "$other" ]; then
        echo "acl-plan: REPLAY_PRINCIPAL must be a principal of its own, not $other" >&2
        exit 2
    fi
done
if [ "$console" = "$cv" ] || [ "$console" = "$telephony" ]; then
    echo "acl-plan: CONSOLE_PRINCIPAL must be a principal of its own, not $console" >&2
    exit 2
fi

acl() {
    echo "kafka-acls.sh --bootstrap-server \"\$KAFKA_BOOTSTRAP\" --command-config \"\$KAFKA_ADMIN_CONFIG\" $action $*"
}

# The telephony system writes calls.ended and reads nothing.
acl --allow-principal "$telephony" --operation Write --operation Describe --topic "$calls"

# The DSR portal writes requests and reads the answers (in its own consumer group).
acl --allow-principal "$portal" --operation Write --operation Describe --topic "$requests"
acl --allow-principal "$portal" --operation Read --operation Describe --topic "$results"
acl --allow-principal "$portal" --operation Read --group "$portal_group" --resource-pattern-type prefixed

# Compliance writes hold commands. (The web console places and releases holds in its own
# audited transaction, so it needs no grant here.)
acl --allow-principal "$compliance" --operation Write --operation Describe --topic "$holds"

# The console writes the requests a signed-in DPO registers (a letter, an e-mail, a call: no
# portal); each is in the audit trail with who registered it and how the identity was checked.
acl --allow-principal "$console" --operation Write --operation Describe --topic "$requests"

# callvault consumes the three inputs in its consumer group (CALLVAULT_APP_ID) ...
for topic in "$calls" "$requests" "$holds"; do
    acl --allow-principal "$cv" --operation Read --operation Describe --topic "$topic"
done
acl --allow-principal "$cv" --operation Read --operation Describe --group "$app_id"
# ... and Faust's leader-election topic (created on first use where the broker auto-creates)
acl --allow-principal "$cv" --operation Read --operation Describe --operation Create \
    --topic "$app_id-__assignor-__leader"
# ... writes its outputs, dead letters and audit checkpoints, and reads dead letters back
# (`callvault deadletter`)
for topic in "$stored" "$due" "$purged" "$results" "$deadletter" "$audit"; do
    acl --allow-principal "$cv" --operation Write --operation Describe --topic "$topic"
done
acl --allow-principal "$cv" --operation Read --topic "$deadletter"
# ... creates its topics (`callvault migrate`; leave out if an administrator creates them) ...
for topic in "$calls" "$requests" "$holds" "$stored" "$due" "$purged" "$results" "$deadletter" \
    "$audit"; do
    acl --allow-principal "$cv" --operation Create --topic "$topic"
done
# Only with ALLOW_DEADLETTER_REPLAY=1: an operator's principal of its own (REPLAY_PRINCIPAL,
# used by nothing that runs unattended or faces the internet) may read the dead letters and put
# them back on their input topic (`callvault deadletter replay`). Without it (the default)
# nobody but their owners writes the inputs: run `callvault deadletter replay`, `dsr submit`,
# `hold place|release` and `publish` with the credentials of the principal that owns the topic.
# callvault's workers never get Write on an input, nor the console beyond the grants above.
if [ "${ALLOW_DEADLETTER_REPLAY:-0}" = 1 ]; then
    acl --allow-principal "$replay" --operation Read --operation Describe --topic "$deadletter"
    for topic in "$calls" "$requests" "$holds"; do
        acl --allow-principal "$replay" --operation Write --operation Describe --topic "$topic"
    done
fi
