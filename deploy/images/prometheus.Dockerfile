# Prometheus and Alertmanager from Debian's packages, standing in for prom/prometheus and
# prom/alertmanager (deploy/compose.sh): TARGET=prometheus or alertmanager; the binary as the
# entrypoint, its data directory owned by nobody, who runs it, as in the public images.
ARG DEBIAN_IMAGE=localhost/callvault/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG TARGET=prometheus
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "$([ "$TARGET" = prometheus ] && echo prometheus || echo prometheus-alertmanager)" \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "/usr/bin/$([ "$TARGET" = prometheus ] && echo prometheus || echo prometheus-alertmanager)" /usr/local/bin/entrypoint \
    && mkdir -p "/$TARGET" && chown nobody:nogroup "/$TARGET"
USER nobody
WORKDIR /${TARGET}
ENTRYPOINT ["/usr/local/bin/entrypoint"]
