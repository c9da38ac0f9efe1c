# shellcheck shell=bash
# Headless Chromium for the console's browser tests: Debian's chromium and its matching
# chromium-driver (apt, idempotent), its UI languages (chromium-l10n: without them a Lithuanian
# browser still shows dates as en-US mm/dd/yyyy), certutil to make a test browser trust the
# local CA, and Caddy, the TLS reverse proxy the console is tested behind (each test runs its
# own on free ports). Sourced by stack.sh; no browser is ever downloaded.
BROWSER_PACKAGES=(chromium chromium-driver chromium-l10n libnss3-tools caddy)

# browser_prepare: installing Debian's caddy would start its system service (ports 80 and
# 2019); mask it first, so that the package only brings the binary.
browser_prepare() {
    if ! command -v caddy >/dev/null && [ -d /etc/systemd/system ] &&
        [ ! -e /etc/systemd/system/caddy.service ]; then
        ln -s /dev/null /etc/systemd/system/caddy.service
    fi
}

# browser_packages_missing: prints the browser packages that are not installed yet.
browser_packages_missing() {
    local p
    for p in "${BROWSER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}
