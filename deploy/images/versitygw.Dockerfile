# versitygw, the binary the native stack builds from the release (deploy/lib/s3.sh), on
# Debian, standing in for the public versity/versitygw image (deploy/compose.sh): /app/versitygw
# and wget for the healthcheck, as there.
ARG DEBIAN_IMAGE=localhost/callvault/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
COPY --chmod=0755 versitygw /app/versitygw
ENTRYPOINT ["/app/versitygw"]
