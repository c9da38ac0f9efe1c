#!/usr/bin/env bash
# Tools that check the Helm chart deploy/helm/callvault against a real Kubernetes API server.
#
#   deploy/kube.sh install   build helm, kine and kube-apiserver from their Go modules when
#                            missing (cached per version, linked into .local/bin), and copy the
#                            CRDs of ServiceMonitor, PrometheusRule and ScaledObject into
#                            .local/kube/crds
#   deploy/kube.sh versions  print the versions this checkout builds
#
# `make helm-test` runs `install`, then tests/kube (helm lint and template; every rendered
# manifest sent to the API server with dryRun=All and fieldValidation=Strict).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/common.sh
. "$DEPLOY_DIR/lib/common.sh"
# shellcheck source=lib/kube.sh
. "$DEPLOY_DIR/lib/kube.sh"

case "${1:-}" in
install)
    ensure_local_dirs
    t0=$SECONDS
    kube_tools_install
    log "helm $HELM_VERSION, kine $KINE_VERSION, kube-apiserver $KUBE_VERSION in $BIN_DIR, CRDs in $KUBE_CRDS ($((SECONDS - t0))s)"
    ;;
versions)
    printf 'helm %s\nkine %s\nkube-apiserver %s\nprometheus-operator CRDs %s\nKEDA CRDs %s\n' \
        "$HELM_VERSION" "$KINE_VERSION" "$KUBE_VERSION" "$PROMETHEUS_OPERATOR_VERSION" "$KEDA_VERSION"
    ;;
*)
    echo "usage: $0 install|versions" >&2
    exit 2
    ;;
esac
