# shellcheck shell=bash
# Headless Chromium for the console's browser tests: Debian's chromium and its matching
# chromium-driver (apt, idempotent). Sourced by stack.sh; no browser is ever downloaded.
BROWSER_PACKAGES=(chromium chromium-driver)

# browser_packages_missing: prints the browser packages that are not installed yet.
browser_packages_missing() {
    local p
    for p in "${BROWSER_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}
