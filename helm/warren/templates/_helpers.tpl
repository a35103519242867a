{{/*
Names, labels and the derived values every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "warren.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, or <release>-<name>, or the
release name alone when it already contains the chart name. At most 63 characters
(DNS label), minus room for suffixes such as "-dashboards".
*/}}
{{- define "warren.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "warren.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them after the first install. */}}
{{- define "warren.selectorLabels" -}}
app.kubernetes.io/name: {{ include "warren.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "warren.labels" -}}
helm.sh/chart: {{ include "warren.chart" . }}
{{ include "warren.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: warren
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "warren.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "warren.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the AMQP URL: the user's, or the one this chart creates. */}}
{{- define "warren.secretName" -}}
{{- default (include "warren.fullname" .) .Values.amqp.existingSecret }}
{{- end }}

{{/* The podDeletionCost admission policy and binding: cluster-scoped, so the namespace is in the name. */}}
{{- define "warren.admissionPolicyName" -}}
{{- printf "%s-%s-pod-deletion-cost" (include "warren.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/* repository:tag, or repository@digest. */}}
{{- define "warren.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Is a replica-managing autoscaler (HPA or KEDA) on? Renders "true" or "". */}}
{{- define "warren.autoscaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}true{{ end }}
{{- end }}

{{/*
A duration as Warren writes it ("25s", "1m30s", "2h", "500ms") in whole seconds,
rounded up. Call with (dict "key" "pool.shutdownTimeout" "value" "25s").
Only h, m, s and ms are understood here (a subset of what Warren accepts), so
the chart can do arithmetic with it; anything else fails with the key's name.
*/}}
{{- define "warren.durationSeconds" -}}
{{- $text := toString .value | nospace }}
{{- if not (regexMatch "^([0-9]+(ms|h|m|s))+$" $text) }}
{{- fail (printf "%s: '%s' is not a duration this chart understands; write it like 500ms, 25s, 1m30s or 2h" .key .value) }}
{{- end }}
{{- $millis := 0 }}
{{- range $part := regexFindAll "[0-9]+(ms|h|m|s)" $text -1 }}
{{- $n := regexFind "^[0-9]+" $part | atoi }}
{{- $unit := regexReplaceAll "^[0-9]+" $part "" }}
{{- $factor := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit }}
{{- $millis = add $millis (mul $n $factor) }}
{{- end }}
{{- div (add $millis 999) 1000 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the value if set (and it must leave time for the
drain), else pool.shutdownTimeout + terminationGraceMarginSeconds.
*/}}
{{- define "warren.terminationGracePeriodSeconds" -}}
{{- /* From the rendered config, so an extraConfig override of pool.shutdown_timeout counts too. */}}
{{- $shutdownText := (include "warren.config" . | fromYaml).pool.shutdown_timeout }}
{{- $shutdown := include "warren.durationSeconds" (dict "key" "pool.shutdownTimeout" "value" $shutdownText) | atoi }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdown .Values.terminationGraceMarginSeconds }}
{{- else }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than pool.shutdownTimeout (%s, i.e. %ds), or Kubernetes kills Warren before in-flight tasks have drained; raise it, lower pool.shutdownTimeout, or leave it null to derive %d" $grace $shutdownText $shutdown (add $shutdown .Values.terminationGraceMarginSeconds)) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* server.listen: host:port, with IPv6 hosts in brackets. */}}
{{- define "warren.listen" -}}
{{- if contains ":" .Values.server.host }}
{{- printf "[%s]:%d" .Values.server.host (int .Values.server.port) }}
{{- else }}
{{- printf "%s:%d" .Values.server.host (int .Values.server.port) }}
{{- end }}
{{- end }}

{{/*
Warren's YAML config (src/config) from the camelCase values, plus extraConfig.
The AMQP URL is not here: it comes from the Secret as WARREN_AMQP_URL.
*/}}
{{- define "warren.config" -}}
{{- $v := .Values }}
{{- $retry := dict "max_attempts" $v.retry.maxAttempts "backoff" $v.retry.backoff }}
{{- with $v.retry.deadLetterQueue }}
{{- $_ := set $retry "dead_letter_queue" . }}
{{- end }}
{{- $http := dict "timeout" $v.handler.http.timeout }}
{{- with $v.handler.http.url }}
{{- $_ := set $http "url" . }}
{{- end }}
{{- $config := dict
  "amqp" (dict "heartbeat" $v.amqp.heartbeat "connect_timeout" $v.amqp.connectTimeout)
  "queue" (dict "name" $v.queue.name "type" $v.queue.type "declare" $v.queue.declare)
  "pool" (dict "concurrency" $v.pool.concurrency "prefetch" $v.pool.prefetch "handler_timeout" $v.pool.handlerTimeout "shutdown_timeout" $v.pool.shutdownTimeout)
  "retry" $retry
  "handler" (dict
    "kind" $v.handler.kind
    "sleep" (dict "per_dot" $v.handler.sleep.perDot)
    "exec" (dict "command" $v.handler.exec.command "reject_exit_codes" $v.handler.exec.rejectExitCodes)
    "http" $http)
  "server" (dict "listen" (include "warren.listen" .))
}}
{{- toYaml (mergeOverwrite $config (deepCopy $v.extraConfig)) }}
{{- end }}

{{/*
Checks of value combinations the schema cannot express. Included by the
Deployment, so every install and every `helm template` runs them.
*/}}
{{- define "warren.validate" -}}
{{- $v := .Values }}
{{- if and $v.autoscaling.enabled $v.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are both true: enable one of them. KEDA creates its own HorizontalPodAutoscaler, so two autoscalers would fight over the Deployment's replicas." }}
{{- end }}
{{- if and (not $v.amqp.existingSecret) (not $v.amqp.url) }}
{{- fail "amqp.url is empty: set amqp.url (amqp://user:password@host:5672/vhost) or amqp.existingSecret" }}
{{- end }}
{{- if and $v.keda.enabled (eq $v.keda.protocol "http") (not $v.amqp.existingSecret) (not $v.amqp.managementUrl) }}
{{- fail "keda.protocol=http reads the management API: set amqp.managementUrl (http://user:password@rabbitmq:15672/), or put it under amqp.secretKeys.managementUrl in amqp.existingSecret" }}
{{- end }}
{{- if and $v.keda.enabled (eq $v.keda.protocol "http") $v.amqp.existingSecret }}
{{- /* Only a real install can look: `helm template` and --dry-run=client get no Secret. NOTES.txt names the key too. */}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace $v.amqp.existingSecret }}
{{- if and $secret (not (hasKey ($secret.data | default dict) $v.amqp.secretKeys.managementUrl)) }}
{{- fail (printf "keda.protocol=http reads the management API URL from key %s of Secret %s (amqp.existingSecret), which has no such key: add it (http://user:password@rabbitmq:15672/) or set amqp.secretKeys.managementUrl to the key that holds it" $v.amqp.secretKeys.managementUrl $v.amqp.existingSecret) }}
{{- end }}
{{- end }}
{{- if and $v.podDeletionCost.enabled $v.podDeletionCost.admissionPolicy.enabled (not (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "podDeletionCost.admissionPolicy needs Kubernetes 1.30+ (admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy); this is %s. Turn it off, or upgrade" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and (has "Deny" $v.podDeletionCost.admissionPolicy.validationActions) (has "Warn" $v.podDeletionCost.admissionPolicy.validationActions) }}
{{- fail "podDeletionCost.admissionPolicy.validationActions: Deny and Warn together are not allowed by Kubernetes; use [Deny] or [Warn, Audit]" }}
{{- end }}
{{- if and (eq $v.handler.kind "exec") (empty $v.handler.exec.command) }}
{{- fail "handler.kind=exec needs handler.exec.command, the program's argv (e.g. [python3, /app/task.py]); the program must be in the image" }}
{{- end }}
{{- if and (eq $v.handler.kind "http") (not $v.handler.http.url) }}
{{- fail "handler.kind=http needs handler.http.url (e.g. http://127.0.0.1:8080/tasks)" }}
{{- end }}
{{- if and $v.handler.http.sidecar.enabled (ne $v.handler.kind "http") }}
{{- fail (printf "handler.http.sidecar.enabled needs handler.kind=http (it is %s)" $v.handler.kind) }}
{{- end }}
{{- if and $v.handler.http.sidecar.enabled (not $v.handler.http.sidecar.container.image) }}
{{- fail "handler.http.sidecar.container.image is empty: give the image of your HTTP handler" }}
{{- end }}
{{- if and $v.autoscaling.enabled $v.autoscaling.cpu.enabled (not (dig "requests" "cpu" "" $v.resources)) }}
{{- fail "autoscaling.cpu.enabled needs resources.requests.cpu: CPU utilization is a percentage of the request" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and $v.keda.enabled (gt (int $v.keda.minReplicaCount) (int $v.keda.maxReplicaCount)) }}
{{- fail (printf "keda.minReplicaCount (%d) is above keda.maxReplicaCount (%d)" (int $v.keda.minReplicaCount) (int $v.keda.maxReplicaCount)) }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not $v.service.enabled) }}
{{- fail "serviceMonitor.enabled needs service.enabled (or use podMonitor, which needs no Service)" }}
{{- end }}
{{- end }}

{{/*
The http handler's sidecar container: the user's spec, named "handler" unless
named, with the chart's securityContext unless it has its own, and
restartPolicy Always when it runs as a native sidecar (an init container).
*/}}
{{- define "warren.sidecarContainer" -}}
{{- $sidecar := .Values.handler.http.sidecar }}
{{- $container := deepCopy $sidecar.container }}
{{- $_ := set $container "name" ($container.name | default "handler") }}
{{- if not (hasKey $container "securityContext") }}
{{- $_ := set $container "securityContext" .Values.securityContext }}
{{- end }}
{{- if $sidecar.native }}
{{- $_ := set $container "restartPolicy" "Always" }}
{{- end }}
{{- toYaml $container }}
{{- end }}
