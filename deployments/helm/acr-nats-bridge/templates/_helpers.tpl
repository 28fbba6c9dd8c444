{{- define "bridge.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bridge.labels" -}}
{{ include "bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Entra ID is on when both its values are set. */}}
{{- define "bridge.entra" -}}
{{- if and .Values.auth.entra.tenantId .Values.auth.entra.audience }}true{{ end -}}
{{- end -}}

{{/* Whether the chart writes the Secret of BRIDGE_AUTH_TOKENS: tokens given, or none of the ways to
     authenticate given (then it generates one, kept across upgrades). */}}
{{- define "bridge.ownAuthSecret" -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.tokens (not (include "bridge.entra" .))) }}true{{ end -}}
{{- end -}}

{{/* The Secret holding BRIDGE_AUTH_TOKENS, if any: the user's, else the chart's. */}}
{{- define "bridge.authSecret" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else if include "bridge.ownAuthSecret" . -}}
{{- include "bridge.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* GOMEMLIMIT: goMemLimitPercent of limits.memory, in MiB. */}}
{{- define "bridge.goMemLimit" -}}
{{- $mem := required "resources.limits.memory is required: GOMEMLIMIT is derived from it" .Values.resources.limits.memory | toString -}}
{{- $mib := 0 -}}
{{- if hasSuffix "Gi" $mem -}}
{{- $mib = mul (trimSuffix "Gi" $mem | atoi) 1024 -}}
{{- else if hasSuffix "Mi" $mem -}}
{{- $mib = trimSuffix "Mi" $mem | atoi -}}
{{- end -}}
{{- if le $mib 0 -}}
{{- fail (printf "resources.limits.memory %q: write it as a whole number of Mi or Gi" $mem) -}}
{{- end -}}
{{- printf "%dMiB" (div (mul $mib (int .Values.goMemLimitPercent)) 100) -}}
{{- end -}}
