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

{{/* Whether the chart writes the Secret of BRIDGE_AUTH_TOKENS: tokens given, or auth.generateToken (then
     it generates one, kept across upgrades). With no way to authenticate given it renders nothing: a token
     generated at render time would change on every `helm template` (Argo CD, Flux), rotating the token under
     Event Grid, which dead-letters a 401 without retrying. */}}
{{- define "bridge.ownAuthSecret" -}}
{{- if not (or .Values.auth.existingSecret .Values.auth.tokens (include "bridge.entra" .) .Values.auth.generateToken) -}}
{{- fail "no way to authenticate deliveries: set auth.existingSecret (a Secret with the key BRIDGE_AUTH_TOKENS), auth.tokens, or auth.entra.tenantId and auth.entra.audience; or auth.generateToken=true to have the chart make a token at install (not for GitOps: helm template renders a new one each time)" -}}
{{- end -}}
{{- range .Values.auth.tokens -}}
{{- if lt (len .) 16 -}}
{{- fail "auth.tokens: each token needs at least 16 random characters (openssl rand -hex 32)" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.tokens .Values.auth.generateToken) }}true{{ end -}}
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
{{- $pct := int .Values.goMemLimitPercent -}}
{{- if or (lt $pct 10) (gt $pct 100) -}}
{{- fail (printf "goMemLimitPercent %v: a share of resources.limits.memory from 10 to 100 (90 leaves room for what Go does not count)" .Values.goMemLimitPercent) -}}
{{- end -}}
{{- printf "%dMiB" (div (mul $mib $pct) 100) -}}
{{- end -}}
