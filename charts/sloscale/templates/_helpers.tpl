{{/* Names and labels shared by every template. */}}

{{- define "sloscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, prefix of every resource (63 characters: a DNS label). */}}
{{- define "sloscale.fullname" -}}
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

{{- define "sloscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: app.kubernetes.io/name is sloscale, the label the operator's pods are known by. */}}
{{- define "sloscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sloscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sloscale.labels" -}}
helm.sh/chart: {{ include "sloscale.chart" . }}
{{ include "sloscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sloscale
{{- end }}

{{- define "sloscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sloscale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: a digest wins over a tag; the tag defaults to the chart's appVersion. */}}
{{- define "sloscale.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True ("true") when the operator watches every namespace. */}}
{{- define "sloscale.allNamespaces" -}}
{{- if not .Values.watch.namespaces }}true{{ end }}
{{- end }}

{{/*
The operator's metric names. The dashboard and the rules are written with the names on the left;
files/metrics.yaml maps them to the names the operator exports, so a rename is one line there.
Usage: include "sloscale.renameMetrics" (dict "root" $ "text" $text)
*/}}
{{- define "sloscale.renameMetrics" -}}
{{- $text := .text }}
{{- range $written, $exported := (.root.Files.Get "files/metrics.yaml" | fromYaml) }}
{{- /* histograms and counters carry suffixes (_bucket, _count, _sum): keep them */}}
{{- $text = regexReplaceAll (printf "\\b%s(_bucket|_count|_sum)?\\b" $written) $text (printf "%s${1}" $exported) }}
{{- end }}
{{- $text }}
{{- end }}
