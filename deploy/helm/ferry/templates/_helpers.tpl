{{/* Chart name, shortened to Kubernetes' 63 characters. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name of the chart's objects. */}}
{{- define "ferry.fullname" -}}
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

{{/* Name of the in-chart Redis and its Secret. */}}
{{- define "ferry.redisName" -}}
{{- printf "%s-redis" (include "ferry.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret holding ferry's secrets: the chart's or existingSecret. */}}
{{- define "ferry.secretName" -}}
{{- default (include "ferry.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferry
{{- end }}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: turn
{{- end }}

{{- define "ferry.redisSelectorLabels" -}}
app.kubernetes.io/name: redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cluster-store
{{- end }}

{{/* "true" when the pods join a cluster through Redis. */}}
{{- define "ferry.clusterEnabled" -}}
{{- if or .Values.redis.enabled .Values.cluster.redis .Values.cluster.redisExistingSecret.name }}true{{ end }}
{{- end }}

{{/* Fails on values that contradict each other. */}}
{{- define "ferry.checkValues" -}}
{{- $redis := 0 }}
{{- if .Values.redis.enabled }}{{ $redis = add1 $redis }}{{ end }}
{{- if .Values.cluster.redis }}{{ $redis = add1 $redis }}{{ end }}
{{- if .Values.cluster.redisExistingSecret.name }}{{ $redis = add1 $redis }}{{ end }}
{{- if gt $redis 1 }}
{{- fail "set one of redis.enabled, cluster.redis and cluster.redisExistingSecret.name" }}
{{- end }}
{{- if and .Values.existingSecret (or .Values.auth.secrets .Values.apiKeys .Values.adminToken .Values.cluster.redis .Values.cluster.nonceSecret) }}
{{- fail (printf "existingSecret %q replaces auth.secrets, apiKeys, adminToken, cluster.redis and cluster.nonceSecret: put them in that Secret" .Values.existingSecret) }}
{{- end }}
{{- end }}

{{/*
The listeners, checked and parsed: a list of dicts with scheme, port,
protocol (UDP or TCP) and name (the container port's name).
*/}}
{{- define "ferry.listeners" -}}
{{- $out := list }}
{{- range .Values.listeners }}
{{- if not (regexMatch "^(udp|tcp|tls|dtls)://(\\[[0-9A-Fa-f:.]+\\]|[0-9.]+):[0-9]{1,5}$" .) }}
{{- fail (printf "listeners: %q is not SCHEME://ADDRESS:PORT with scheme udp, tcp, tls or dtls and an explicit port" .) }}
{{- end }}
{{- $scheme := regexFind "^[a-z]+" . }}
{{- $port := regexFind "[0-9]+$" . | atoi }}
{{- $proto := ternary "UDP" "TCP" (or (eq $scheme "udp") (eq $scheme "dtls")) }}
{{- $out = append $out (dict "scheme" $scheme "port" $port "protocol" $proto "name" (printf "%s-%d" $scheme $port)) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* "true" when a listener or the HTTP port is below 1024. */}}
{{- define "ferry.lowPort" -}}
{{- $low := lt (int .Values.http.port) 1024 }}
{{- range (include "ferry.listeners" . | fromJsonArray) }}
{{- if lt (int .port) 1024 }}{{ $low = true }}{{ end }}
{{- end }}
{{- if $low }}true{{ end }}
{{- end }}

{{/* "true" when ferry must run as root to hold capabilities. */}}
{{- define "ferry.root" -}}
{{- if or .Values.fastPath.enabled (include "ferry.lowPort" .) }}true{{ end }}
{{- end }}

{{- define "ferry.terminationGracePeriodSeconds" -}}
{{- $min := add (int .Values.preStopSleepSeconds) (int .Values.drainTimeoutSeconds) }}
{{- if eq (toString .Values.terminationGracePeriodSeconds) "" }}
{{- add $min 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds %v must exceed preStopSleepSeconds + drainTimeoutSeconds (%d), or the drain is cut short" .Values.terminationGracePeriodSeconds $min) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* ferry's config file: the chart's keys, then .Values.config over them. */}}
{{- define "ferry.config" -}}
{{- $secret := "the chart's secret values or existingSecret: secrets do not belong in the ConfigMap" }}
{{- $managed := dict
  "drain-timeout" "drainTimeoutSeconds, which also sizes terminationGracePeriodSeconds"
  "listen" "listeners, which also become container ports"
  "http.listen" "http.port, which the probes and the Service use"
  "relay.offload" "fastPath.enabled and fastPath.mode, which also grant the capabilities"
  "relay.offload-interfaces" "fastPath.interfaces"
  "tls.cert" "tls.existingSecret, which also mounts the files"
  "tls.key" "tls.existingSecret, which also mounts the files"
  "auth.secrets" $secret
  "auth.users" $secret
  "http.api-keys" $secret
  "http.admin-token" $secret
  "cluster.redis" $secret
  "cluster.nonce-secret" $secret
}}
{{- range $path, $hint := $managed }}
{{- $node := $.Values.config }}
{{- $found := true }}
{{- range splitList "." $path }}
{{- if and $found (kindIs "map" $node) (hasKey $node .) }}{{ $node = index $node . }}{{ else }}{{ $found = false }}{{ end }}
{{- end }}
{{- if $found }}
{{- fail (printf "config.%s: set it through %s" $path $hint) }}
{{- end }}
{{- end }}
{{- $relay := dict "ports" .Values.relay.ports "offload" (ternary .Values.fastPath.mode "off" .Values.fastPath.enabled) }}
{{- with .Values.relay.externalIP }}{{ $_ := set $relay "external-ip" . }}{{ end }}
{{- with .Values.relay.allowedPeers }}{{ $_ := set $relay "allowed-peers" . }}{{ end }}
{{- with .Values.relay.deniedPeers }}{{ $_ := set $relay "denied-peers" . }}{{ end }}
{{- if and .Values.fastPath.enabled .Values.fastPath.interfaces }}{{ $_ := set $relay "offload-interfaces" .Values.fastPath.interfaces }}{{ end }}
{{- $http := dict "listen" (printf ":%d" (int .Values.http.port)) }}
{{- with .Values.http.corsOrigins }}{{ $_ := set $http "cors-origins" . }}{{ end }}
{{- $cfg := dict
  "realm" .Values.realm
  "listen" .Values.listeners
  "relay" $relay
  "http" $http
  "auth" (dict "max-ttl" .Values.auth.maxTTL)
  "log" (dict "level" .Values.log.level "format" .Values.log.format)
  "cluster" (dict "region" .Values.cluster.region "placement-count" (int .Values.cluster.placementCount))
  "drain-timeout" (printf "%ds" (int .Values.drainTimeoutSeconds))
}}
{{- with .Values.publicHost }}{{ $_ := set $cfg "public-host" . }}{{ end }}
{{- if .Values.tls.existingSecret }}
{{- $_ := set $cfg "tls" (dict "cert" "/etc/ferry-tls/tls.crt" "key" "/etc/ferry-tls/tls.key") }}
{{- end }}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) }}
{{- end }}

{{/*
A secret value: the given one, else the one the release's Secret already
holds (so upgrades keep it), else a new random one.
Arguments: (list $ "secret-name" "key" "given value").
*/}}
{{- define "ferry.keepOrMake" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $key := index . 2 }}
{{- $given := index . 3 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $old := lookup "v1" "Secret" $root.Release.Namespace $name | default dict }}
{{- $data := get $old "data" | default dict }}
{{- if hasKey $data $key }}
{{- index $data $key | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}
