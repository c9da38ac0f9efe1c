# Apache Kafka from the jars deploy/kafka/pom.xml fetches with Maven (the native stack's
# .local/kafka/libs) on Debian's Java, standing in for the public apache/kafka image where no
# public registry answers (deploy/compose.sh). Configured like that image: every KAFKA_* variable
# becomes a server property (KAFKA_FOO_BAR -> foo.bar; __ -> _, ___ -> -), CLUSTER_ID formats
# the log directory on the first start; /etc/kafka/docker/run starts it, as uid 1000.
ARG DEBIAN_IMAGE=localhost/callvault/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --user-group --home-dir /opt/kafka appuser \
    && mkdir -p /opt/kafka/config /var/lib/kafka/data \
    && chown -R appuser:appuser /opt/kafka /var/lib/kafka
COPY libs/ /opt/kafka/libs/
COPY --chmod=0755 kafka-run.sh /etc/kafka/docker/run
COPY log4j2.properties /opt/kafka/config/log4j2.properties
USER appuser
ENTRYPOINT ["/etc/kafka/docker/run"]
