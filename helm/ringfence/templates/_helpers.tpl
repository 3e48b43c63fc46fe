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

{{/* Non-empty when a rules source is configured; without one the image's example rules serve. */}}
{{- define "ringfence.hasRules" -}}
{{- if or .Values.rules .Values.rulesFrom.existingConfigMap .Values.rulesFrom.volume }}true{{ end }}
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
{{- if le (int $v.terminationGracePeriodSeconds) (add (int $v.server.graceSeconds) (int $v.server.preStopSleepSeconds) | int) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed server.preStopSleepSeconds + server.graceSeconds (%d): the kubelet would SIGKILL calls still draining." (int $v.terminationGracePeriodSeconds) (add (int $v.server.graceSeconds) (int $v.server.preStopSleepSeconds) | int)) }}
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
Probes: native gRPC where possible. The kubelet's gRPC probe cannot speak TLS, so with TLS
on they run `ringfence health` against localhost (the certificate must name localhost).
*/}}
{{- define "ringfence.probe" -}}
{{- if .root.Values.tls.enabled }}
exec:
  command:
    - /opt/venv/bin/ringfence
    {{- include "ringfence.healthArgs" (dict "root" .root "host" "localhost" "service" .service) | nindent 4 }}
timeoutSeconds: 5
{{- else }}
grpc:
  port: {{ .root.Values.server.grpcPort }}
  service: {{ .service | quote }}
timeoutSeconds: 2
{{- end }}
periodSeconds: {{ .cfg.periodSeconds }}
failureThreshold: {{ .cfg.failureThreshold }}
{{- end }}
