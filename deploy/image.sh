#!/usr/bin/env bash
# Builds callvault's image with podman (no Docker engine needed):
#
#   deploy/image.sh            callvault:<version> from deploy/Dockerfile
#   deploy/image.sh pkcs11     that, then callvault-softhsm:<version> with SoftHSM2's PKCS#11
#                              library (deploy/images/pkcs11.Dockerfile) for keys in a token
#
# The Dockerfile takes its base as a build argument (PYTHON_IMAGE: by default the public
# python image, pinned by digest). With CALLVAULT_IMAGE_BASE=local (the default here, where no
# public image registry answers) the base is made on this machine from Debian's packages:
# mmdebstrap's minbase imported into podman, then python3 from Debian on top
# (deploy/images/python.Dockerfile). CALLVAULT_IMAGE_BASE=public builds on the public image.
# CALLVAULT_IMAGE overrides the tag. Installs podman, runc and mmdebstrap when missing and
# configures podman for this machine (deploy/lib/podman.sh).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=lib/podman.sh
. "$DEPLOY_DIR/lib/podman.sh"

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml" | head -n1)"
IMAGE="${CALLVAULT_IMAGE:-callvault:$VERSION}"
PYTHON_BASE="localhost/callvault/python:3.11-$DEBIAN_SUITE"

ensure_local_dirs
podman_ready
args=()
if [ "${CALLVAULT_IMAGE_BASE:-local}" = local ]; then
    podman_debian_base
    podman_has_image "$PYTHON_BASE" \
        || podman_build "$PYTHON_BASE" "$DEPLOY_DIR/images" "$DEPLOY_DIR/images/python.Dockerfile" \
            --build-arg "DEBIAN_IMAGE=$DEBIAN_BASE"
    args+=(--build-arg "PYTHON_IMAGE=$PYTHON_BASE")
fi
# Behind a TLS-intercepting proxy pip needs the host's CA bundle: lent to the build only.
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
    args+=(--volume "$host_ca:/run/host-ca.pem:ro" --build-arg PIP_CERT=/run/host-ca.pem)
fi
t0=$SECONDS
podman_build "$IMAGE" "$REPO_ROOT" "$DEPLOY_DIR/Dockerfile" "${args[@]}" \
    --ignorefile "$DEPLOY_DIR/Dockerfile.dockerignore"
log "built $IMAGE in $((SECONDS - t0))s ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"

if [ "${1:-}" = pkcs11 ]; then
    t0=$SECONDS
    base="$IMAGE"
    [[ "$base" == */* ]] || base="localhost/$base"
    podman_build "${IMAGE%%:*}-softhsm:${IMAGE##*:}" "$DEPLOY_DIR/images" \
        "$DEPLOY_DIR/images/pkcs11.Dockerfile" --build-arg "CALLVAULT_IMAGE=$base" \
        --build-arg PACKAGES=softhsm2
    log "built ${IMAGE%%:*}-softhsm:${IMAGE##*:} in $((SECONDS - t0))s"
fi
