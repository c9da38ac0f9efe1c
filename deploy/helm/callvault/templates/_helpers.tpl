{{/* Names and labels ------------------------------------------------------------------ */}}
{{- define "callvault.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callvault.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "callvault.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "callvault.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "callvault.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callvault.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "callvault.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "callvault.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: callvault
{{- end }}

{{- define "callvault.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "callvault.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "callvault.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The `job` label of the workers' series: what the alert rules and KEDA select on. */}}
{{- define "callvault.job" -}}
{{- default (printf "%s-worker" (include "callvault.fullname" .)) .Values.metrics.job }}
{{- end }}

{{/* The consumer-lag gauge every worker exports for its input topics (adapters/metrics.py). */}}
{{- define "callvault.lagMetric" -}}
callvault_consumer_lag_messages
{{- end }}

{{/* Secret references -> the setting each one gives (read through CALLVAULT_<NAME>_FILE). */}}
{{- define "callvault.secretVariables" -}}
databaseUrl: CALLVAULT_DATABASE_URL
databaseAdminUrl: CALLVAULT_DATABASE_ADMIN_URL
s3AccessKey: CALLVAULT_S3_ACCESS_KEY
s3SecretKey: CALLVAULT_S3_SECRET_KEY
masterKey: CALLVAULT_MASTER_KEY
masterKeys: CALLVAULT_MASTER_KEYS
hashKey: CALLVAULT_HASH_KEY
hashKeysRetired: CALLVAULT_HASH_KEYS_RETIRED
signingKey: CALLVAULT_SIGNING_KEY
pkcs11Pin: CALLVAULT_PKCS11_PIN
kafkaSaslPassword: CALLVAULT_KAFKA_SASL_PASSWORD
kafkaKeyPassword: CALLVAULT_KAFKA_KEY_PASSWORD
sessionSecret: CALLVAULT_SESSION_SECRET
oidcClientSecret: CALLVAULT_OIDC_CLIENT_SECRET
twilioAuthToken: CALLVAULT_TWILIO_AUTH_TOKEN
telnyxApiKey: CALLVAULT_TELNYX_API_KEY
vonageSignatureSecret: CALLVAULT_VONAGE_SIGNATURE_SECRET
vonagePrivateKey: CALLVAULT_VONAGE_PRIVATE_KEY
{{- end }}

{{/* The secret references a component mounts: those it lists that name a Secret - its own
     reference (`refs`) where it has one, else the shared one under `secrets:` (never with
     `ownOnly`) - and the ones it cannot start without must be there.
     Args: root, names (list), refs (dict, optional), ownOnly (bool, optional). */}}
{{- define "callvault.mountedSecrets" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $variables := include "callvault.secretVariables" $root | fromYaml }}
{{- $own := .refs | default dict }}
{{- $mounted := dict }}
{{- range .names }}
{{- $ref := get $own . }}
{{- if not (and $ref $ref.name) }}
{{- if $.ownOnly }}
{{- $ref = dict }}
{{- else }}
{{- $ref = required (printf "secrets.%s: no such secret reference (known: %s)" . (keys $values.secrets | sortAlpha | join ", ")) (get $values.secrets .) }}
{{- end }}
{{- end }}
{{- if $ref.name }}
{{- $_ := set $mounted . (dict "name" $ref.name "key" (required (printf "secrets.%s.key is required" .) $ref.key) "variable" (get $variables .)) }}
{{- end }}
{{- end }}
{{- $needed := list "databaseUrl" "s3AccessKey" "s3SecretKey" }}
{{- if hasPrefix "SASL_" $values.kafka.securityProtocol }}{{- $needed = append $needed "kafkaSaslPassword" }}{{- end }}
{{- if eq $values.keys.backend "pkcs11" }}
{{- $needed = append $needed "pkcs11Pin" }}
{{- else }}
{{- $needed = append $needed "hashKey" }}
{{- if and (has "masterKey" .names) (not (or (hasKey $mounted "masterKey") (hasKey $mounted "masterKeys"))) }}
{{- fail "secrets.masterKey.name (or secrets.masterKeys.name): the name of an existing Secret is required (or keys.backend: pkcs11)" }}
{{- end }}
{{- end }}
{{- range $needed }}
{{- if and (has . $.names) (not (hasKey $mounted .)) }}
{{- fail (printf "%s.%s.name: the name of an existing Secret is required (values never hold secrets)" (ternary $.where "secrets" (eq $.ownOnly true)) .) }}
{{- end }}
{{- end }}
{{- toYaml $mounted }}
{{- end }}

{{/* Environment of a callvault container. Args: root, names (secret list), refs, ownOnly,
     env (extra map), kafkaUser (the component's principal), connector (true: a telephony
     connector - no keys, no database). */}}
{{- define "callvault.env" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $variables := include "callvault.secretVariables" $root | fromYaml }}
{{- range $name, $_ := $values.config }}
{{- if or (has $name (values $variables)) (has (trimSuffix "_FILE" $name) (values $variables)) }}
{{- fail (printf "config.%s: a secret never goes into values; name an existing Secret under secrets:" $name) }}
{{- end }}
{{- end }}
- name: CALLVAULT_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap (host:port of your Kafka brokers) is required" $values.kafka.bootstrap | quote }}
- name: CALLVAULT_KAFKA_SECURITY_PROTOCOL
  value: {{ $values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $values.kafka.securityProtocol }}
- name: CALLVAULT_KAFKA_SASL_MECHANISM
  value: {{ $values.kafka.saslMechanism | quote }}
- name: CALLVAULT_KAFKA_SASL_USERNAME
  value: {{ required "kafka.saslUsername is required with a SASL protocol" (.kafkaUser | default $values.kafka.saslUsername) | quote }}
{{- end }}
- name: CALLVAULT_S3_ENDPOINT
  value: {{ required "s3.endpoint (the object store's URL) is required" $values.s3.endpoint | quote }}
- name: CALLVAULT_S3_REGION
  value: {{ $values.s3.region | quote }}
{{- with $values.s3.publicEndpoint }}
- name: CALLVAULT_S3_PUBLIC_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if $values.kafka.caConfigMap }}
- name: CALLVAULT_KAFKA_CA_FILE
  value: /etc/callvault/tls/kafka/ca.crt
{{- end }}
{{- if $values.s3.caConfigMap }}
- name: CALLVAULT_S3_CA_BUNDLE
  value: /etc/callvault/tls/s3/ca.crt
{{- end }}
{{- if and $values.database.caConfigMap (not .connector) }}
- name: CALLVAULT_DATABASE_CA_FILE
  value: /etc/callvault/tls/database/ca.crt
{{- end }}
- name: CALLVAULT_MIGRATE_ON_START
  value: "false"
{{- if not .connector }}
{{- include "callvault.keysEnv" $root }}
{{- end }}
{{- range $name, $value := mergeOverwrite (deepCopy $values.config) (.env | default dict) }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $ref := include "callvault.mountedSecrets" . | fromYaml }}
- name: {{ $ref.variable }}_FILE
  value: /etc/callvault/secrets/{{ $name }}
{{- end }}
{{- end }}

{{/* Settings of the components that use callvault's keys and write to people: where the keys
     live (docs/keys.md), the letters' controller and authority, language and time zone. */}}
{{- define "callvault.keysEnv" -}}
{{- $values := .Values }}
{{- $pkcs11 := $values.keys.pkcs11 }}
{{- if eq $values.keys.backend "pkcs11" }}
- name: CALLVAULT_KEYS_BACKEND
  value: pkcs11
- name: CALLVAULT_PKCS11_MODULE
  value: {{ required "keys.pkcs11.module (the path of the HSM vendor's PKCS#11 library in the container) is required" $pkcs11.module | quote }}
- name: CALLVAULT_PKCS11_TOKEN_LABEL
  value: {{ required "keys.pkcs11.tokenLabel (the token or partition callvault's keys are in) is required" $pkcs11.tokenLabel | quote }}
{{- with $pkcs11.tokenSerial }}
- name: CALLVAULT_PKCS11_TOKEN_SERIAL
  value: {{ . | quote }}
{{- end }}
{{- range $name, $value := $pkcs11.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- with $values.letters.controller }}
- name: CALLVAULT_CONTROLLER
  value: {{ toJson . | quote }}
{{- end }}
{{- with $values.letters.controllerTenants }}
- name: CALLVAULT_CONTROLLER_TENANTS
  value: {{ toJson . | quote }}
{{- end }}
{{- with $values.letters.authority }}
- name: CALLVAULT_AUTHORITY
  value: {{ toJson . | quote }}
{{- end }}
- name: CALLVAULT_LANGUAGE
  value: {{ $values.locale.language | quote }}
- name: CALLVAULT_TIMEZONE
  value: {{ $values.locale.timezone | quote }}
{{- end }}

{{/* The ConfigMaps with the CAs a component trusts (kind -> ConfigMap). Args: root, connector. */}}
{{- define "callvault.caConfigMaps" -}}
{{- $values := .root.Values }}
{{- $found := dict "kafka" $values.kafka.caConfigMap "s3" $values.s3.caConfigMap }}
{{- if not .connector }}{{- $_ := set $found "database" $values.database.caConfigMap }}{{- end }}
{{- toYaml $found }}
{{- end }}

{{/* Volumes of a callvault pod: its secrets as files, the CAs, and the writable scratch
     directories of a read-only root. Args: root, names. */}}
{{- define "callvault.volumes" -}}
{{- $values := .root.Values }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
{{- range $name, $ref := include "callvault.mountedSecrets" . | fromYaml }}
      - secret:
          name: {{ $ref.name }}
          items:
            - key: {{ $ref.key }}
              path: {{ $name }}
{{- end }}
{{- range $what, $configMap := include "callvault.caConfigMaps" . | fromYaml }}
{{- if $configMap }}
- name: ca-{{ $what }}
  configMap:
    name: {{ $configMap }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- end }}
- name: tmp
  emptyDir: {medium: Memory, sizeLimit: 64Mi}
- name: data
  emptyDir: {sizeLimit: 256Mi}
{{- if and (not .connector) (eq $values.keys.backend "pkcs11") }}
{{- with $values.keys.pkcs11.volumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "callvault.volumeMounts" -}}
{{- $values := .root.Values }}
- name: secrets
  mountPath: /etc/callvault/secrets
  readOnly: true
{{- range $what, $configMap := include "callvault.caConfigMaps" . | fromYaml }}
{{- if $configMap }}
- name: ca-{{ $what }}
  mountPath: /etc/callvault/tls/{{ $what }}
  readOnly: true
{{- end }}
{{- end }}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/callvault
{{- if and (not .connector) (eq $values.keys.backend "pkcs11") }}
{{- with $values.keys.pkcs11.volumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- with .extraMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* httpGet probes on a named port. Args: root, port. */}}
{{- define "callvault.probes" -}}
{{- $p := .root.Values.probes }}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  {{- toYaml $p.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  {{- toYaml $p.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  {{- toYaml $p.readiness | nindent 2 }}
{{- end }}

{{/* Pod-level settings every callvault pod shares. Args: root. */}}
{{- define "callvault.podSpec" -}}
serviceAccountName: {{ include "callvault.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The `job` label of the connectors' series (CallvaultProviderCopiesKept reads them). */}}
{{- define "callvault.connectorJob" -}}
{{- default (printf "%s-connectors" (include "callvault.fullname" .)) .Values.metrics.connectorJob }}
{{- end }}

{{/* An Ingress to the Service <fullname>-<name>, port http, for the paths under `path`.
     Args: root, name, component, path, ingress (its values), where (their path, for messages). */}}
{{- define "callvault.ingress" -}}
{{- $root := .root }}
{{- $ingress := .ingress }}
{{- $host := required (printf "%s.host is required" .where) $ingress.host }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "callvault.fullname" $root }}-{{ .name }}
  labels:
    {{- include "callvault.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  {{- with $ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if $ingress.tlsSecretName }}
  tls:
    - hosts: [{{ $host | quote }}]
      secretName: {{ $ingress.tlsSecretName }}
  {{- end }}
  rules:
    - host: {{ $host | quote }}
      http:
        paths:
          - path: {{ .path }}
            pathType: Prefix
            backend:
              service:
                name: {{ include "callvault.fullname" $root }}-{{ .name }}
                port: {name: http}
{{- end }}
