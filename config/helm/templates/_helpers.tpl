{{/*
Names. Namespaced objects have fixed names (except the controller's service account, serviceAccount.name: the
admission policies match whichever it is); cluster-scoped objects are named after the release, so shards installed as separate
releases (in separate namespaces) do not collide.
*/}}
{{- define "acrpull.name" -}}acrpull{{- end }}

{{/* The namespace of every namespaced object: the release's (helm -n), unless the value `namespace` overrides it. */}}
{{- define "acrpull.namespace" -}}{{ .Values.namespace | default .Release.Namespace }}{{- end }}

{{/*
The controller's service account: serviceAccount.name (default acrpull), created by the chart unless
serviceAccount.create is false. The RBAC bindings' subjects and every admission policy's username follow it.
*/}}
{{- define "acrpull.serviceAccountName" -}}{{ .Values.serviceAccount.name | default "acrpull" }}{{- end }}

{{- define "acrpull.clusterRoleName" -}}{{ .Release.Name }}-controller{{- end }}

{{- define "acrpull.leaderElectionRoleName" -}}acrpull-leader-election{{- end }}

{{/* The user the apiserver sees when the controller calls it; every admission policy matches only this user. */}}
{{- define "acrpull.controllerUsername" -}}
system:serviceaccount:{{ include "acrpull.namespace" $ }}:{{ include "acrpull.serviceAccountName" . }}
{{- end }}

{{/* image.digest (sha256:...) wins over the tag: repository@digest. An image given as one string (msi-acrpull's
chart spelled it `image: registry/repository:tag`) is used as it is. */}}
{{- define "acrpull.image" -}}
{{- if kindIs "string" .Values.image -}}
{{ .Values.image }}
{{- else -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else if hasPrefix "@" $tag -}}
{{ .Values.image.repository }}{{ $tag }}
{{- else if hasPrefix "sha256:" $tag -}}
{{ .Values.image.repository }}@{{ $tag }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "acrpull.imagePullPolicy" -}}
{{- if kindIs "string" .Values.image -}}IfNotPresent{{- else -}}{{ .Values.image.pullPolicy | default "IfNotPresent" }}{{- end -}}
{{- end }}

{{- define "acrpull.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acrpull.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object: app.kubernetes.io/name and instance (the workloads' selectors), component (what the object
belongs to: controller, node-agent, assignment-controller, admission-policy, crd, namespace), part-of, version,
managed-by, helm.sh/chart, and the value commonLabels. The chart's own labels win over commonLabels, so a common label
can never change a selector. Called as include "acrpull.labelsOf" (dict "root" $ "name" <name> "component" <component>).
*/}}
{{- define "acrpull.labelsOf" -}}
{{- $root := .root -}}
{{- $own := dict
  "app.kubernetes.io/name" .name
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/component" .component
  "app.kubernetes.io/part-of" (include "acrpull.name" $root)
  "app.kubernetes.io/version" ($root.Chart.AppVersion | toString)
  "app.kubernetes.io/managed-by" $root.Release.Service
  "helm.sh/chart" (printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_") -}}
{{- merge $own (deepCopy ($root.Values.commonLabels | default dict)) | toYaml }}
{{- end }}

{{/* Labels of the controller's objects. */}}
{{- define "acrpull.labels" -}}
{{ include "acrpull.labelsOf" (dict "root" . "name" (include "acrpull.name" .) "component" "controller") }}
{{- end }}

{{/* Labels of the admission policies, their bindings and parameters. */}}
{{- define "acrpull.policyLabels" -}}
{{ include "acrpull.labelsOf" (dict "root" . "name" (include "acrpull.name" .) "component" "admission-policy") }}
{{- end }}

{{/* Labels of the CustomResourceDefinitions. */}}
{{- define "acrpull.crdLabels" -}}
{{ include "acrpull.labelsOf" (dict "root" . "name" (include "acrpull.name" .) "component" "crd") }}
{{- end }}

{{/*
Labels of a workload's pods besides its selector labels: component, part-of, commonLabels and the workload's
podLabels (which win over commonLabels; the selector labels win over both). Called as include "acrpull.podLabels"
(dict "root" $ "selector" <selector labels YAML> "component" <component> "podLabels" <map>).
*/}}
{{- define "acrpull.podLabels" -}}
{{- $own := merge (.selector | fromYaml) (dict "app.kubernetes.io/component" .component "app.kubernetes.io/part-of" (include "acrpull.name" .root)) -}}
{{- merge $own (deepCopy (.podLabels | default dict)) (deepCopy (.root.Values.commonLabels | default dict)) | toYaml }}
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
{{ include "acrpull.labelsOf" (dict "root" . "name" (include "acrpull.nmi.name" .) "component" "node-agent") }}
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
{{ include "acrpull.labelsOf" (dict "root" . "name" (include "acrpull.mic.name" .) "component" "assignment-controller") }}
{{- end }}
