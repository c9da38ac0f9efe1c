# callvault's image with an HSM's PKCS#11 library in it, for CALLVAULT_KEYS_BACKEND=pkcs11
# (docs/keys.md): the library from Debian's packages (PACKAGES: softhsm2 for trials, opensc for
# smart-card HSMs such as the Nitrokey HSM), or - the same way - the HSM vendor's client
# package or files (Thales Luna, Entrust nShield, Utimaco, AWS CloudHSM, YubiHSM 2), added by
# a Dockerfile of your own FROM callvault's image. `deploy/image.sh pkcs11` builds
# callvault-softhsm:<version> with this file (the Helm chart's pods test, tests/kube, uses it).
# SoftHSM2's token directory is a volume mounted outside /var/lib/softhsm, which Debian keeps
# 0750 root:softhsm (out of reach of callvault's user).
ARG CALLVAULT_IMAGE=localhost/callvault:0.1.0
FROM ${CALLVAULT_IMAGE}
ARG PACKAGES=softhsm2
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends ${PACKAGES} \
    && rm -rf /var/lib/apt/lists/*
USER callvault
