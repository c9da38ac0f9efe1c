#!/bin/bash
# The local Kafka image's start (deploy/images/kafka.Dockerfile): KAFKA_* variables to
# server.properties as the apache/kafka image converts them, the storage formatted with
# CLUSTER_ID when new, then the broker in the foreground.
set -euo pipefail
conf=/opt/kafka/config/server.properties
: >"$conf"
while IFS='=' read -r name _; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS) continue ;;
        KAFKA_*) ;;
        *) continue ;;
    esac
    key="${name#KAFKA_}"
    key="${key,,}"
    key="${key//___/-}"
    key="${key//__/@}"
    key="${key//_/.}"
    key="${key//@/_}"
    printf '%s=%s\n' "$key" "${!name}" >>"$conf"
done < <(env)
libs='/opt/kafka/libs/*'
read -r -a java_opts <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
java_opts+=(-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties)
data="$(sed -n 's/^log\.dirs=//p' "$conf" | cut -d, -f1)"
if [ ! -f "${data:-/var/lib/kafka/data}/meta.properties" ]; then
    java "${java_opts[@]}" -cp "$libs" kafka.tools.StorageTool format --ignore-formatted \
        -t "${CLUSTER_ID:?set CLUSTER_ID}" -c "$conf"
fi
exec java "${java_opts[@]}" -XX:+UseG1GC -Djava.awt.headless=true -cp "$libs" kafka.Kafka "$conf"
