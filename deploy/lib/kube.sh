# shellcheck shell=bash
# The tools that check the Helm chart: helm, and a real Kubernetes API server (kube-apiserver
# over kine, an etcd API on SQLite) for server-side dry-runs, with the CustomResourceDefinitions
# the chart's optional resources need (Prometheus Operator's ServiceMonitor and PrometheusRule,
# KEDA's ScaledObject). All are built or taken from Go modules (go_install_cached, `go mod
# download`) and cached per version; nothing runs as a service.

HELM_VERSION=v3.21.4
KINE_VERSION=v0.17.5
KUBE_VERSION=v1.34.2
# The staging modules (k8s.io/api, apimachinery, apiserver, ...) of Kubernetes 1.N.P are v0.N.P.
KUBE_STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
KUBE_APISERVER_BIN="$GO_CACHE_BIN/kube-apiserver-$KUBE_VERSION"
PROMETHEUS_OPERATOR_VERSION=v0.85.0
KEDA_VERSION=v2.18.3
KUBE_CRDS="$LOCAL_DIR/kube/crds"

# What helm's own build stamps in: its version, and the Kubernetes version it renders for by
# default (that of its client-go, v0.36 = Kubernetes 1.36; unstamped it would claim 1.20).
HELM_KUBE_MINOR=36
HELM_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/chartutil pkg/lint/rules; do
    HELM_LDFLAGS+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_KUBE_MINOR"
done

helm_install() {
    go_install_cached helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$HELM_LDFLAGS" >/dev/null
}

kine_install() { go_install_cached kine "$KINE_VERSION" github.com/k3s-io/kine >/dev/null; }

# kube-apiserver cannot be `go install`ed: the k8s.io/kubernetes module replaces its staging
# modules with ./staging paths that a module download leaves empty. In a writable copy of the
# source the replacements go and the staging modules are pinned to their published versions.
kube_apiserver_install() {
    if [ ! -x "$KUBE_APISERVER_BIN" ]; then
        command -v go >/dev/null || die "kube-apiserver $KUBE_VERSION must be built with Go, and 'go' is not on PATH"
        log "building kube-apiserver $KUBE_VERSION from its Go module (first time only, several minutes)"
        mkdir -p "$GO_CACHE_BIN" "$LOG_DIR"
        local src work
        src="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | "$HELPER_PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
            || die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed"
        work="$(mktemp -d "$GO_CACHE_BIN.tmp.XXXXXX")"
        cp -r "$src" "$work/kubernetes"
        chmod -R u+w "$work/kubernetes"
        rm -rf "$work/kubernetes/vendor" "$work/kubernetes"/go.work*
        sed -i -e '/=> \.\/staging\//d' \
            -e "s#^\(\s*k8s\.io/[a-z0-9-]*\) v0\.0\.0\$#\1 $KUBE_STAGING_VERSION#" \
            "$work/kubernetes/go.mod"
        if ! (cd "$work/kubernetes" && GOFLAGS="-mod=mod -trimpath -buildvcs=false" go build \
            -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
            -o "$work/kube-apiserver" ./cmd/kube-apiserver) >"$LOG_DIR/kube-apiserver-build.log" 2>&1; then
            rm -rf "$work"
            die "building kube-apiserver $KUBE_VERSION failed (see $LOG_DIR/kube-apiserver-build.log)"
        fi
        mv -f "$work/kube-apiserver" "$KUBE_APISERVER_BIN"
        rm -rf "$work"
    fi
    mkdir -p "$BIN_DIR"
    ln -sfn "$KUBE_APISERVER_BIN" "$BIN_DIR/kube-apiserver"
}

# go_module_dir MODULE VERSION: where `go mod download` put the module's source.
go_module_dir() {
    go mod download -json "$1@$2" | "$HELPER_PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' \
        || die "go mod download $1@$2 failed"
}

# The CRDs as their projects publish them, copied into $KUBE_CRDS.
kube_crds_install() {
    local operator keda
    operator="$(go_module_dir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")"
    keda="$(go_module_dir github.com/kedacore/keda/v2 "$KEDA_VERSION")"
    mkdir -p "$KUBE_CRDS"
    install -m 0644 \
        "$operator/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
        "$operator/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" \
        "$keda/config/crd/bases/keda.sh_scaledobjects.yaml" \
        "$KUBE_CRDS/"
}

# kube_tools_install: helm, kine, kube-apiserver and the CRDs, one after the other (two cores).
kube_tools_install() {
    helm_install
    kine_install
    kube_apiserver_install
    kube_crds_install
}
