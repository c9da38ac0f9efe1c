# shellcheck shell=bash
# Telephony tools for the connectors' tests and the demo: two SIP user agents (baresip),
# a SIP proxy with an RTP relay that records calls (kamailio, rtpengine), speech (espeak-ng)
# and audio tools (sox with its format handlers, opusenc). Only the binaries are used: no
# service of these packages is enabled or started (tests run them on loopback themselves).

TELEPHONY_PACKAGES=(baresip-core kamailio rtpengine-daemon espeak-ng sox libsox-fmt-all opus-tools)

# telephony_install: apt-installs whatever of TELEPHONY_PACKAGES is missing (idempotent).
telephony_install() {
    apt_install "${TELEPHONY_PACKAGES[@]}"
    telephony_quiet_services
}

# Debian's packages may start their daemons on install where an init system runs them; the
# tests start their own on loopback, so stop packaged ones that listen on default ports.
telephony_quiet_services() {
    local service
    command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] || return 0
    for service in kamailio rtpengine-daemon; do
        systemctl disable --now "$service" >/dev/null 2>&1 || true
    done
}
