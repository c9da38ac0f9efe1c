# shellcheck shell=bash
# SoftHSM2, a PKCS#11 token in files, for the tests of CALLVAULT_KEYS_BACKEND=pkcs11: Debian's
# softhsm2 (the library and softhsm2-util) and opensc (pkcs11-tool, used by docs/keys.md's
# procedures). Its tokens live under .local/softhsm, chosen by SOFTHSM2_CONF; each test
# initialises a token of its own there. Sourced by stack.sh.
SOFTHSM_PACKAGES=(softhsm2 opensc)
SOFTHSM_DIR="$LOCAL_DIR/softhsm"
SOFTHSM_CONF="$SOFTHSM_DIR/softhsm2.conf"
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

# softhsm_packages_missing: prints the SoftHSM2 packages that are not installed yet.
softhsm_packages_missing() {
    local p
    for p in "${SOFTHSM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

# softhsm_ensure: the token directory and the configuration that points to it (idempotent).
softhsm_ensure() {
    [ -f "$SOFTHSM_MODULE" ] || die "SoftHSM2's library $SOFTHSM_MODULE is missing"
    mkdir -p "$SOFTHSM_DIR/tokens"
    chmod 700 "$SOFTHSM_DIR"
    [ -f "$SOFTHSM_CONF" ] || printf '%s\n' \
        "directories.tokendir = $SOFTHSM_DIR/tokens" \
        "objectstore.backend = file" \
        "log.level = ERROR" \
        "slots.removable = false" >"$SOFTHSM_CONF"
}
