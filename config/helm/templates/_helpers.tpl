{{/*
Names. Namespaced objects have fixed names (the controller's service account must be "acrpull": the admission
policies match its username); cluster-scoped objects are named after the release, so shards installed as separate
releases (in separate namespaces) do not collide.
*/}}
{{- define "acrpull.name" -}}acrpull{{- end }}

{{- define "acrpull.serviceAccountName" -}}acrpull{{- end }}

{{- define "acrpull.clusterRoleName" -}}{{ .Release.Name }}-controller{{- end }}

{{- define "acrpull.leaderElectionRoleName" -}}acrpull-leader-election{{- end }}

{{/* The user the apiserver sees when the controller calls it; every admission policy matches only this user. */}}
{{- define "acrpull.controllerUsername" -}}
system:serviceaccount:{{ .Values.namespace }}:{{ include "acrpull.serviceAccountName" . }}
{{- end }}

{{- define "acrpull.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if hasPrefix "@" $tag -}}
{{ .Values.image.repository }}{{ $tag }}
{{- else if hasPrefix "sha256:" $tag -}}
{{ .Values.image.repository }}@{{ $tag }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{- define "acrpull.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acrpull.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "acrpull.labels" -}}
{{ include "acrpull.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
Whether to render the scrape objects (monitoring.create: auto, true or false). "auto" looks for the API group they
are rendered in: monitoring.coreos.com (Prometheus Operator) or azmonitoring.coreos.com (Azure Managed Prometheus).
*/}}
{{- define "acrpull.monitoring" -}}
{{- $create := toString .Values.monitoring.create -}}
{{- $api := printf "%s/v1" .Values.monitoring.apiGroup -}}
{{- if or (eq $create "true") (and (eq $create "auto") (.Capabilities.APIVersions.Has $api)) -}}
true
{{- end -}}
{{- end }}

{{/*
Whether to render the PrometheusRule (monitoring.rules.create). It exists only in monitoring.coreos.com: Azure Managed
Prometheus takes rules as Azure resources (prometheusRuleGroups), not from the cluster.
*/}}
{{- define "acrpull.monitoring.rules" -}}
{{- $create := toString .Values.monitoring.rules.create -}}
{{- if or (eq $create "true") (and (eq $create "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) -}}
true
{{- end -}}
{{- end }}

{{/*
The pod identity node agent (podIdentity.enabled). Its namespaced objects have fixed names too; its ClusterRole is
named after the release. Its pods are labelled app.kubernetes.io/name: acrpull-nmi, so the controller's selectors
(Deployment, Service, PodDisruptionBudget, monitor) and the controller's AzurePodIdentityException never match them.
*/}}
{{- define "acrpull.nmi.name" -}}acrpull-nmi{{- end }}

{{- define "acrpull.nmi.serviceAccountName" -}}acrpull-nmi{{- end }}

{{- define "acrpull.nmi.clusterRoleName" -}}{{ .Release.Name }}-nmi{{- end }}

{{- define "acrpull.nmi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acrpull.nmi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "acrpull.nmi.labels" -}}
{{ include "acrpull.nmi.selectorLabels" . }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: {{ include "acrpull.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The pod identity assignment controller (podIdentity.mic.enabled), upstream's MIC. Fixed names like the node agent's;
its ClusterRole is named after the release. Its pods are labelled app.kubernetes.io/name: acrpull-mic, which neither
the controller's nor the node agent's selectors match.
*/}}
{{- define "acrpull.mic.name" -}}acrpull-mic{{- end }}

{{- define "acrpull.mic.serviceAccountName" -}}acrpull-mic{{- end }}

{{- define "acrpull.mic.clusterRoleName" -}}{{ .Release.Name }}-mic{{- end }}

{{- define "acrpull.mic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acrpull.mic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "acrpull.mic.labels" -}}
{{ include "acrpull.mic.selectorLabels" . }}
app.kubernetes.io/component: assignment-controller
app.kubernetes.io/part-of: {{ include "acrpull.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
