{{/*
IP databases (ipDatabases): MaxMind DB files ip.* facts are read from, mounted read-only at
ipDatabases.mountPath from a volume, or copied there from an image by an init container.
*/}}

{{- define "ringfence.ipdbPaths" -}}
{{- $dir := .Values.ipDatabases.mountPath -}}
{{- $paths := list -}}
{{- range .Values.ipDatabases.files }}{{ $paths = append $paths (printf "%s/%s" $dir .) }}{{ end -}}
{{- join ":" $paths -}}
{{- end }}

{{- define "ringfence.ipdbEnv" -}}
{{- if .Values.ipDatabases.enabled }}
# The server refuses to start when one of them is missing or not a database, and reloads
# a file that is replaced (a new image, geoipupdate writing into the volume).
- name: RINGFENCE_IP_DB
  value: {{ include "ringfence.ipdbPaths" . | quote }}
- name: RINGFENCE_IP_DB_POLL
  value: {{ .Values.ipDatabases.pollSeconds | quote }}
{{- end }}
{{- end }}

{{- define "ringfence.ipdbMounts" -}}
{{- if .Values.ipDatabases.enabled }}
- name: ip-databases
  mountPath: {{ .Values.ipDatabases.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "ringfence.ipdbVolumes" -}}
{{- $ip := .Values.ipDatabases }}
{{- if $ip.enabled }}
- name: ip-databases
  {{- if $ip.volume }}
  {{- toYaml $ip.volume | nindent 2 }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $ip.sizeLimit }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "ringfence.ipdbInit" -}}
{{- $ip := .Values.ipDatabases }}
{{- if and $ip.enabled (not $ip.volume) }}
{{- $sources := list }}
{{- range $ip.files }}{{ $sources = append $sources (printf "%s/%s" $ip.image.path .) }}{{ end }}
# Copies the databases out of the image that carries them into the pod's volume.
- name: ip-databases
  image: {{ printf "%s:%s" $ip.image.repository $ip.image.tag | quote }}
  imagePullPolicy: {{ $ip.image.pullPolicy }}
  command:
    - sh
    - -c
    - {{ printf "cp %s /ipdb/" (join " " $sources) | quote }}
  resources:
    {{- toYaml $ip.image.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    privileged: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: ip-databases
      mountPath: /ipdb
{{- end }}
{{- end }}

{{- define "ringfence.ipdbValidate" -}}
{{- $ip := .Values.ipDatabases }}
{{- if $ip.enabled }}
{{- if not $ip.files }}
{{- fail "ipDatabases.enabled needs ipDatabases.files: the .mmdb file names, in the order their fields are read (e.g. [GeoLite2-City.mmdb, GeoLite2-ASN.mmdb])." }}
{{- end }}
{{- if and (not $ip.volume) (not $ip.image.repository) }}
{{- fail "ipDatabases.enabled needs a source: ipDatabases.volume (a PVC or CSI volume holding the files) or ipDatabases.image (an image they are copied from)." }}
{{- end }}
{{- if and $ip.volume $ip.image.repository }}
{{- fail "choose one source for the IP databases: ipDatabases.volume or ipDatabases.image." }}
{{- end }}
{{- end }}
{{- end }}
