{{/* Names and labels. */}}
{{- define "ringfence.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ringfence.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ringfence.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ringfence.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringfence.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ringfence.labels" -}}
helm.sh/chart: {{ include "ringfence.chart" . }}
{{ include "ringfence.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringfence
{{- end }}

{{- define "ringfence.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ringfence.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ringfence.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding hash-key, admin-token (and redis-url): the user's or the chart's. */}}
{{- define "ringfence.secretName" -}}
{{- default (printf "%s-secrets" (include "ringfence.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Non-empty when a rules source is configured (a bundle URL included). */}}
{{- define "ringfence.hasRules" -}}
{{- if or .Values.rules .Values.rulesFrom.existingConfigMap .Values.rulesFrom.volume (include "ringfence.bundleEnabled" .) }}true{{ end }}
{{- end }}

{{/* Non-empty when rules come from a bundle (its URL in the values or in a Secret). */}}
{{- define "ringfence.bundleEnabled" -}}
{{- if or .Values.bundle.url .Values.bundle.urlSecret }}true{{ end }}
{{- end }}

{{/*
The Secret the bundle URL is read from, or empty when it is a plain value: the user's
urlSecret, or one of the chart's own when the URL holds credentials (user info or a query,
which a presigned object-store URL uses for its signature).
*/}}
{{- define "ringfence.bundleUrlSecret" -}}
{{- if .Values.bundle.urlSecret }}
{{- .Values.bundle.urlSecret }}
{{- else if and .Values.bundle.url (or (regexMatch "^[^:/?#]+://[^/?#]*@" .Values.bundle.url) (contains "?" .Values.bundle.url)) }}
{{- printf "%s-bundle-url" (include "ringfence.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Non-empty when the rules folder gets a volume: a real source, or an empty folder over the
image's example policy when none is given (so the pod is never Ready on a policy nobody
chose). Only demoPolicy=true leaves the image's example in place; a bundle needs no folder.
*/}}
{{- define "ringfence.mountsRules" -}}
{{- if and (not (include "ringfence.bundleEnabled" .)) (not .Values.demoPolicy) }}true{{ end }}
{{- end }}

{{/* Labels of the helm test pod: its own name, so no Service, PDB or policy selects it. */}}
{{- define "ringfence.testLabels" -}}
helm.sh/chart: {{ include "ringfence.chart" . }}
app.kubernetes.io/name: {{ include "ringfence.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: test
{{- end }}

{{- define "ringfence.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ringfence.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ringfence.bundleKeysName" -}}
{{- default (printf "%s-bundle-keys" (include "ringfence.fullname" .)) .Values.bundle.keyringConfigMap }}
{{- end }}

{{/* Environment for delivery: health endpoint, connection age, watching, bundles. */}}
{{- define "ringfence.deliveryEnv" -}}
- name: RINGFENCE_HEALTH_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.healthHttp.port) | quote }}
- name: RINGFENCE_MAX_CONNECTION_AGE
  value: {{ .Values.connectionAge.maxSeconds | quote }}
- name: RINGFENCE_MAX_CONNECTION_AGE_GRACE
  value: {{ .Values.connectionAge.callGraceSeconds | quote }}
- name: RINGFENCE_WATCH_POLL_MS
  value: {{ .Values.rulesWatch.pollMs | quote }}
{{- if include "ringfence.bundleUrlSecret" . }}
# The URL may hold credentials: read from a mounted Secret, never from the environment.
- name: RINGFENCE_BUNDLE_FILE
  value: /etc/ringfence/bundle-url/url
{{- else if .Values.bundle.url }}
- name: RINGFENCE_BUNDLE
  value: {{ .Values.bundle.url | quote }}
{{- end }}
{{- with .Values.bundle }}
{{- if include "ringfence.bundleEnabled" $ }}
- name: RINGFENCE_BUNDLE_DIR
  value: /var/lib/ringfence/bundle
- name: RINGFENCE_BUNDLE_POLL
  value: {{ .pollSeconds | quote }}
- name: RINGFENCE_BUNDLE_JITTER
  value: {{ .jitterSeconds | quote }}
- name: RINGFENCE_BUNDLE_MAX_MB
  value: {{ .maxSizeMiB | quote }}
- name: RINGFENCE_BUNDLE_MAX_UNPACKED_MB
  value: {{ .maxUnpackedMiB | quote }}
{{- if or .publicKeys .keyringConfigMap }}
- name: RINGFENCE_BUNDLE_KEYRING
  value: /etc/ringfence/bundle-keys
{{- end }}
{{- if .allowUnsigned }}
- name: RINGFENCE_BUNDLE_ALLOW_UNSIGNED
  value: "true"
{{- end }}
{{- if .tokenSecret }}
- name: RINGFENCE_BUNDLE_TOKEN_FILE
  value: /etc/ringfence/bundle-token/token
{{- end }}
{{- with .tokenRealmHosts }}
- name: RINGFENCE_BUNDLE_TOKEN_REALM_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
{{- if .caConfigMap }}
- name: RINGFENCE_BUNDLE_CA
  value: /etc/ringfence/bundle-ca/ca.crt
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ringfence.deliveryMounts" -}}
{{- if eq .Values.state.backend "redis" }}
- name: state
  mountPath: /etc/ringfence/state
  readOnly: true
{{- end }}
{{- if .Values.state.tenantSecrets.existingSecret }}
- name: tenant-state
  mountPath: /etc/ringfence/tenant-state
  readOnly: true
{{- end }}
{{- if include "ringfence.bundleEnabled" . }}
- name: bundle-work
  mountPath: /var/lib/ringfence/bundle
{{- if include "ringfence.bundleUrlSecret" . }}
- name: bundle-url
  mountPath: /etc/ringfence/bundle-url
  readOnly: true
{{- end }}
{{- if or .Values.bundle.publicKeys .Values.bundle.keyringConfigMap }}
- name: bundle-keys
  mountPath: /etc/ringfence/bundle-keys
  readOnly: true
{{- end }}
{{- if .Values.bundle.tokenSecret }}
- name: bundle-token
  mountPath: /etc/ringfence/bundle-token
  readOnly: true
{{- end }}
{{- if .Values.bundle.caConfigMap }}
- name: bundle-ca
  mountPath: /etc/ringfence/bundle-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "ringfence.deliveryVolumes" -}}
{{- if eq .Values.state.backend "redis" }}
- name: state
  secret:
    {{- if .Values.state.redis.existingSecret }}
    secretName: {{ .Values.state.redis.existingSecret }}
    {{- else }}
    secretName: {{ include "ringfence.secretName" . }}
    {{- end }}
    defaultMode: 0440
    items:
      - key: {{ ternary .Values.state.redis.existingSecretKey "redis-url" (not (empty .Values.state.redis.existingSecret)) }}
        path: url
{{- end }}
{{- with .Values.state.tenantSecrets.existingSecret }}
- name: tenant-state
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- if include "ringfence.bundleEnabled" . }}
# On disk, not in memory: a memory-backed emptyDir would count the download and the
# unpacked lists against the container's memory limit.
- name: bundle-work
  emptyDir:
    sizeLimit: {{ .Values.bundle.workDirSizeLimit }}
{{- with include "ringfence.bundleUrlSecret" . }}
- name: bundle-url
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ ternary $.Values.bundle.urlSecretKey "url" (not (empty $.Values.bundle.urlSecret)) }}
        path: url
{{- end }}
{{- if or .Values.bundle.publicKeys .Values.bundle.keyringConfigMap }}
- name: bundle-keys
  configMap:
    name: {{ include "ringfence.bundleKeysName" . }}
{{- end }}
{{- with .Values.bundle.tokenSecret }}
- name: bundle-token
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: token
        path: token
{{- end }}
{{- with .Values.bundle.caConfigMap }}
- name: bundle-ca
  configMap:
    name: {{ . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/*
Delivery checks: a hash key that is the same on every replica and every render, a bundle
that can be verified, a rules ConfigMap that fits, scraping that the NetworkPolicy allows.
*/}}
{{- define "ringfence.validateDelivery" -}}
{{- $v := .Values }}
{{- $shared := or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled (eq $v.state.backend "redis") }}
{{- if and $shared (not $v.auth.existingSecret) (not $v.auth.hashKey) }}
{{- fail "several replicas, autoscaling or Redis state need a hash key that never changes: set auth.existingSecret (a Secret with keys hash-key and admin-token; recommended) or auth.hashKey. A generated key differs on every `helm template` (Argo CD, Flux), and replicas with different keys write different Redis keys for the same number." }}
{{- end }}
{{- if and (include "ringfence.bundleEnabled" .) (not $v.bundle.publicKeys) (not $v.bundle.keyringConfigMap) (not $v.bundle.allowUnsigned) }}
{{- fail "bundle.url needs bundle.publicKeys or bundle.keyringConfigMap to verify signatures (or bundle.allowUnsigned=true to accept whatever the URL serves)." }}
{{- end }}
{{- if and $v.bundle.url $v.bundle.urlSecret }}
{{- fail "give bundle.url or bundle.urlSecret, not both." }}
{{- end }}
{{- $size := 0 }}
{{- range $tenant, $files := $v.rules }}
{{- range $path, $content := $files }}
{{- $size = add $size (len $content) (len $path) (len $tenant) 2 }}
{{- end }}
{{- end }}
{{- if gt (int $size) 921600 }}
{{- fail (printf "rules come to %d bytes, over the ~900 KiB a ConfigMap can safely hold (the API server's limit is 1 MiB): deliver them as a signed bundle (bundle.url, see docs/operations.md \"Deliver big lists\") or from a volume (rulesFrom.volume with rulesWatch.pollMs)." (int $size)) }}
{{- end }}
{{- if and $v.networkPolicy.enabled $v.serviceMonitor.enabled $v.server.metrics (not $v.networkPolicy.metricsFrom) }}
{{- fail "serviceMonitor.enabled with networkPolicy.enabled: set networkPolicy.metricsFrom to the peers that scrape (e.g. the monitoring namespace), or the policy blocks them." }}
{{- end }}
{{- if and (include "ringfence.bundleEnabled" .) (or $v.rules $v.rulesFrom.existingConfigMap $v.rulesFrom.volume) }}
{{- fail "choose one rules source: bundle.url replaces rules and rulesFrom." }}
{{- end }}
{{- end }}

{{/* The drain time the server uses: server.drainSeconds, or what "auto" makes of the age. */}}
{{- define "ringfence.drainSeconds" -}}
{{- if eq (toString .Values.server.drainSeconds) "auto" }}
{{- if gt (int .Values.connectionAge.maxSeconds) 0 }}
{{- add1 (div (add (mul (int .Values.connectionAge.maxSeconds) 11) 9) 10) }}
{{- else }}0{{ end }}
{{- else }}
{{- int .Values.server.drainSeconds }}
{{- end }}
{{- end }}

{{- define "ringfence.rulesConfigMapName" -}}
{{- printf "%s-rules" (include "ringfence.fullname" .) }}
{{- end }}

{{/*
ConfigMap keys cannot hold "/", so "<tenant>/<path>" becomes "<tenant>.<path with / as .>"
and the volume's items put each key back at its path.
*/}}
{{- define "ringfence.rulesKey" -}}
{{- printf "%s.%s" .tenant (.path | replace "/" ".") }}
{{- end }}

{{/*
Checks that JSON Schema cannot express (comparisons between values) or that must hold even
when schema validation is skipped. Each failure says what to change.
*/}}
{{- define "ringfence.validate" -}}
{{- $v := .Values }}
{{- if eq $v.state.backend "memory" }}
{{- if gt (int $v.replicaCount) 1 }}
{{- fail (printf "replicaCount is %d but state.backend is \"memory\": each replica would count velocity on its own and every window would under-count. Set state.backend=redis and state.redis.url (or state.redis.existingSecret), or replicaCount=1." (int $v.replicaCount)) }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- fail "autoscaling.enabled is true but state.backend is \"memory\": replicas would not share velocity counters. Set state.backend=redis with state.redis.url (or state.redis.existingSecret), or disable autoscaling." }}
{{- end }}
{{- end }}
{{- if and (eq $v.state.backend "redis") (not $v.state.redis.url) (not $v.state.redis.existingSecret) (not $v.auth.existingSecret) }}
{{- fail "state.backend is \"redis\" but no URL is given: set state.redis.url, state.redis.existingSecret or auth.existingSecret (key redis-url)." }}
{{- end }}
{{- if hasKey $v.server "graceSeconds" }}
{{- fail "server.graceSeconds is now server.shutdownGraceSeconds (and connectionAge.graceSeconds connectionAge.callGraceSeconds): two settings of one name were one too many." }}
{{- end }}
{{- if hasKey $v.connectionAge "graceSeconds" }}
{{- fail "connectionAge.graceSeconds is now connectionAge.callGraceSeconds (server.graceSeconds is server.shutdownGraceSeconds)." }}
{{- end }}
{{- $drain := include "ringfence.drainSeconds" . | int }}
{{- $shutdown := add (int $v.server.preStopSleepSeconds) $drain (int $v.server.shutdownGraceSeconds) | int }}
{{- if le (int $v.terminationGracePeriodSeconds) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed server.preStopSleepSeconds + drainSeconds + shutdownGraceSeconds (%d): the kubelet would SIGKILL calls still draining." (int $v.terminationGracePeriodSeconds) $shutdown) }}
{{- end }}
{{- $sources := 0 }}
{{- if $v.rules }}{{ $sources = add1 $sources }}{{ end }}
{{- if $v.rulesFrom.existingConfigMap }}{{ $sources = add1 $sources }}{{ end }}
{{- if $v.rulesFrom.volume }}{{ $sources = add1 $sources }}{{ end }}
{{- if gt (int $sources) 1 }}
{{- fail "choose one rules source: rules (a map of tenant -> files), rulesFrom.existingConfigMap or rulesFrom.volume." }}
{{- end }}
{{- if and $v.server.metrics (eq (int $v.server.grpcPort) (int $v.server.metricsPort)) }}
{{- fail (printf "server.grpcPort and server.metricsPort are both %d: give metrics its own port." (int $v.server.grpcPort)) }}
{{- end }}
{{- if and $v.tls.enabled (not $v.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key)." }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)." (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- include "ringfence.validateDelivery" . }}
{{- end }}

{{/* The health check command for exec probes and the helm test pod. */}}
{{- define "ringfence.healthArgs" -}}
- health
- {{ printf "%s:%d" .host (int .root.Values.server.grpcPort) | quote }}
- --service
- {{ .service | quote }}
{{- if .root.Values.tls.enabled }}
- --tls-ca
- /etc/ringfence/tls/ca.crt
{{- if .root.Values.tls.clientAuth }}
- --tls-cert
- /etc/ringfence/tls/tls.crt
- --tls-key
- /etc/ringfence/tls/tls.key
{{- end }}
{{- end }}
{{- end }}

{{/*
Probes. Readiness means "a policy is served": gRPC health for the DecisionService
(NOT_SERVING until a policy loads, and again while draining), or /readyz, which reads the
same state, when TLS is on (the kubelet's gRPC probe cannot speak TLS). Liveness and start-up
mean "the process answers": /healthz, answered by the event loop whether or not a policy is
loaded, in both modes, so a pod waiting for its first bundle or serving no tenant is left not
ready, never restarted.
*/}}
{{- define "ringfence.probe" -}}
{{- if eq .kind "ready" }}
{{- if .root.Values.tls.enabled }}
httpGet:
  path: /readyz
  port: health
{{- else }}
grpc:
  port: {{ .root.Values.server.grpcPort }}
  service: ringfence.v1.DecisionService
{{- end }}
{{- else }}
httpGet:
  path: /healthz
  port: health
{{- end }}
timeoutSeconds: 2
periodSeconds: {{ .cfg.periodSeconds }}
failureThreshold: {{ .cfg.failureThreshold }}
{{- end }}
