{{/* The chart's name, or nameOverride. */}}
{{- define "pinsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: fullnameOverride, else the release name when it holds the
chart's name, else both. The StatefulSet's pods are <fullname>-0, -1, ...: each
pod's name is its Kafka instance id.
*/}}
{{- define "pinsync.fullname" -}}
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

{{- define "pinsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pinsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pinsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pinsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pinsync
{{- end }}

{{/* The Secret holding app-id, app-secret and token-key. */}}
{{- define "pinsync.secretName" -}}
{{- .Values.secret.existingSecret | default (include "pinsync.fullname" .) }}
{{- end }}

{{/* The port of config.http.listen (":8080" -> 8080). */}}
{{- define "pinsync.port" -}}
{{- splitList ":" .Values.config.http.listen | last | int }}
{{- end }}

{{/* The annotations that let an annotation-based Prometheus scrape pinsync. */}}
{{- define "pinsync.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "pinsync.port" . | quote }}
prometheus.io/path: /metrics
{{- end }}
