# shellcheck shell=bash
# A throw-away certificate authority for the local stack's secure profile, made with openssl
# and kept in .local/tls (git-ignored, kept by reset): one server certificate for 127.0.0.1
# and localhost, used by Kafka's SASL_SSL listener, PostgreSQL and the TLS versitygw. Never
# use it anywhere else.

TLS_DIR="$LOCAL_DIR/tls"
TLS_CA="$TLS_DIR/ca.pem"
TLS_CERT="$TLS_DIR/server.pem"
TLS_KEY="$TLS_DIR/server.key"
TLS_KAFKA_KEYSTORE="$TLS_DIR/kafka-keystore.pem" # key + certificate, Kafka's PEM keystore

tls_install() { command -v openssl >/dev/null || apt_install openssl; }

# tls_ensure: the CA and the server certificate, made once (a certificate that expires within
# a week is made again).
tls_ensure() {
    tls_install
    mkdir -p "$TLS_DIR"
    chmod 0755 "$TLS_DIR"
    if [ -s "$TLS_CA" ] && [ -s "$TLS_CERT" ] && [ -s "$TLS_KAFKA_KEYSTORE" ] &&
        openssl x509 -checkend 604800 -noout -in "$TLS_CERT" >/dev/null 2>&1; then
        return 0
    fi
    log "making the local stack's throw-away CA and server certificate (.local/tls)"
    local ext="$TLS_DIR/server.ext"
    (
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
            -subj "/CN=callvault local stack CA (throw-away)" \
            -keyout "$TLS_DIR/ca.key" -out "$TLS_CA" >>"$LOG_DIR/tls.log" 2>&1
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=127.0.0.1" -keyout "$TLS_KEY" -out "$TLS_DIR/server.csr" \
            >>"$LOG_DIR/tls.log" 2>&1
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$ext"
        openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_CA" -CAkey "$TLS_DIR/ca.key" \
            -CAcreateserial -days 825 -extfile "$ext" -out "$TLS_CERT" >>"$LOG_DIR/tls.log" 2>&1
        # Kafka's PEM keystore: the private key in PKCS#8, then the certificate
        openssl pkcs8 -topk8 -nocrypt -in "$TLS_KEY" -out "$TLS_KAFKA_KEYSTORE" \
            >>"$LOG_DIR/tls.log" 2>&1
        cat "$TLS_CERT" >>"$TLS_KAFKA_KEYSTORE"
    ) || die "openssl could not make the local CA (see $LOG_DIR/tls.log)"
    chmod 0644 "$TLS_CA" "$TLS_CERT"
    rm -f "$TLS_DIR/server.csr" "$ext"
}
