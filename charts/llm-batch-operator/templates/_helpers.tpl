{{/*
Names, labels and small computed values shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "llmbatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, or "<release>-<name>" (just the release
name when it already contains the chart name). Truncated to 63 characters (DNS label).
*/}}
{{- define "llmbatch.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "llmbatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "llmbatch.labels" -}}
helm.sh/chart: {{ include "llmbatch.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-batch-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "llmbatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmbatch.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Full labels of one component; same arguments as llmbatch.selectorLabels. */}}
{{- define "llmbatch.componentLabels" -}}
{{ include "llmbatch.labels" .ctx }}
{{ include "llmbatch.selectorLabels" . }}
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "llmbatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmbatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator (and gateway) image. */}}
{{- define "llmbatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The default runner image handed to the operator. */}}
{{- define "llmbatch.runnerImage" -}}
{{- printf "%s:%s" .Values.runner.image.repository (default .Chart.AppVersion .Values.runner.image.tag) }}
{{- end }}

{{/* Namespaces the operator watches, as a list; empty means all (cluster scope only). */}}
{{- define "llmbatch.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else if eq .Values.rbac.scope "namespaced" }}
{{- toJson (list .Release.Namespace) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{/* MinIO object names and its in-cluster URL. */}}
{{- define "llmbatch.minio.fullname" -}}
{{- printf "%s-minio" (include "llmbatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmbatch.minio.url" -}}
{{- printf "http://%s.%s.svc:%v" (include "llmbatch.minio.fullname" .) .Release.Namespace .Values.minio.port }}
{{- end }}

{{/* The default S3 endpoint: storage.endpoint, else the chart's MinIO, else empty (AWS). */}}
{{- define "llmbatch.storageEndpoint" -}}
{{- if .Values.storage.endpoint }}
{{- .Values.storage.endpoint }}
{{- else if .Values.minio.enabled }}
{{- include "llmbatch.minio.url" . }}
{{- end }}
{{- end }}

{{/* Gateway object names. */}}
{{- define "llmbatch.gateway.fullname" -}}
{{- printf "%s-gateway" (include "llmbatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmbatch.gateway.keysSecretName" -}}
{{- default (printf "%s-keys" (include "llmbatch.gateway.fullname" .)) .Values.gateway.keysSecretName }}
{{- end }}

{{- define "llmbatch.gateway.webhooksSecretName" -}}
{{- default (printf "%s-webhooks" (include "llmbatch.gateway.fullname" .)) .Values.gateway.webhooks.secretName }}
{{- end }}

{{- define "llmbatch.gateway.namespace" -}}
{{- default .Release.Namespace .Values.gateway.config.namespace }}
{{- end }}

{{/* The Secret with S3 credentials the gateway uses, or empty. */}}
{{- define "llmbatch.gateway.s3Secret" -}}
{{- if .Values.gateway.config.storage.secretRef }}
{{- .Values.gateway.config.storage.secretRef }}
{{- else if .Values.minio.enabled }}
{{- .Values.minio.secretName }}
{{- end }}
{{- end }}

{{/* Pod and container security settings shared by the chart's own workloads. */}}
{{- define "llmbatch.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "llmbatch.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}
