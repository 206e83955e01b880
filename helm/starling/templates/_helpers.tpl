{{- define "starling.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "starling.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "starling.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "starling.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Whole numbers in a values map (YAML gives Helm float64s) as integers, in place, at any
depth: the server's integer keys refuse 10.0. */}}
{{- define "starling.integers" -}}
{{- range $key, $value := . -}}
{{- if kindIs "map" $value -}}
{{- include "starling.integers" $value -}}
{{- else if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) -}}
{{- $_ := set $ $key (int64 $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* starling.toml: the values' config with what the chart decides itself. */}}
{{- define "starling.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $server := merge (dict "domain" .Values.domain "data_dir" "/var/lib/starling" "shutdown_grace_seconds" .Values.shutdownGraceSeconds) (get $config "server" | default dict) -}}
{{- $_ := set $config "server" $server -}}
{{- $c2s := merge (dict "starttls_listen" (list (printf "0.0.0.0:%d" (int .Values.edge.ports.c2s))) "direct_tls_listen" (list (printf "0.0.0.0:%d" (int .Values.edge.ports.c2sTls)))) (get $config "c2s" | default dict) -}}
{{- $_ := set $config "c2s" $c2s -}}
{{- $_ := set $config "admin" (dict "listen" "0.0.0.0:5280") -}}
{{- if .Values.tls.existingSecret -}}
{{- $_ := set $config "tls" (dict "cert_file" "/etc/starling/tls/tls.crt" "key_file" "/etc/starling/tls/tls.key") -}}
{{- end -}}
{{- $hosts := get $config "hosts" | default dict -}}
{{- range $domain, $secret := .Values.tls.hosts -}}
{{- $files := dict "cert_file" (printf "/etc/starling/hosts/%s/tls.crt" $domain) "key_file" (printf "/etc/starling/hosts/%s/tls.key" $domain) -}}
{{- $_ := set $hosts $domain (merge $files (get $hosts $domain | default dict)) -}}
{{- end -}}
{{- if $hosts -}}{{- $_ := set $config "hosts" $hosts -}}{{- end -}}
{{- with .Values.credentials -}}
{{- if .existingSecret -}}
{{- if .kafka -}}{{- $_ := set $config.cluster "kafka_password_file" "/etc/starling/credentials/kafka-password" -}}{{- end -}}
{{- if .redis -}}{{- $_ := set $config.cluster "redis_password_file" "/etc/starling/credentials/redis-password" -}}{{- end -}}
{{- if .scylla -}}{{- $_ := set $config.store "scylla_password_file" "/etc/starling/credentials/scylla-password" -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.edge.websocket.enabled -}}
{{- $websocket := merge (dict "tls_listen" (list (printf "0.0.0.0:%d" (int .Values.edge.websocket.port)))) (get $config "websocket" | default dict) -}}
{{- $_ := set $config "websocket" $websocket -}}
{{- end -}}
{{- include "starling.integers" $config -}}
{{- toToml $config -}}
{{- end -}}

{{/* The pod spec both roles share; .role is "edge" or "session", .spec its values. */}}
{{- define "starling.pod" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "starling.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
  annotations:
    checksum/config: {{ include "starling.config" $root | sha256sum }}
    {{- with .spec.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- if $root.Values.topologySpread.enabled }}
  topologySpreadConstraints:
    {{- range $key := list $root.Values.topologySpread.zoneKey "kubernetes.io/hostname" }}
    - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
      topologyKey: {{ $key }}
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "starling.selector" (dict "root" $root "role" $.role) | nindent 10 }}
    {{- end }}
  {{- end }}
  {{- with .spec.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .spec.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .spec.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: starling
      image: {{ include "starling.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: ["--config", "/etc/starling/starling.toml", "serve", "--role", {{ .role | quote }}]
      env:
        # A stable node identity: the pod's name (an edge's Kafka inbox topic is named after it).
        - name: STARLING__CLUSTER__NODE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
      ports:
        - {name: admin, containerPort: 5280, protocol: TCP}
        {{- if eq .role "edge" }}
        - {name: c2s, containerPort: {{ $root.Values.edge.ports.c2s }}, protocol: TCP}
        - {name: c2s-tls, containerPort: {{ $root.Values.edge.ports.c2sTls }}, protocol: TCP}
        {{- if $root.Values.edge.websocket.enabled }}
        - {name: websocket, containerPort: {{ $root.Values.edge.websocket.port }}, protocol: TCP}
        {{- end }}
        {{- end }}
      livenessProbe:
        httpGet: {path: /healthz, port: admin}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: /readyz, port: admin}
        periodSeconds: 5
        failureThreshold: 2
      startupProbe:
        httpGet: {path: /healthz, port: admin}
        periodSeconds: 2
        failureThreshold: 60
      resources:
        {{- toYaml .spec.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - {name: config, mountPath: /etc/starling/starling.toml, subPath: starling.toml, readOnly: true}
        - {name: data, mountPath: /var/lib/starling}
        {{- if $root.Values.tls.existingSecret }}
        - {name: tls, mountPath: /etc/starling/tls, readOnly: true}
        {{- end }}
        {{- range $index, $domain := keys $root.Values.tls.hosts | sortAlpha }}
        - {name: host-tls-{{ $index }}, mountPath: /etc/starling/hosts/{{ $domain }}, readOnly: true}
        {{- end }}
        {{- if $root.Values.credentials.existingSecret }}
        - {name: credentials, mountPath: /etc/starling/credentials, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "starling.fullname" $root }}
    # Keys and a self-signed certificate when none is given; the data itself is in ScyllaDB.
    - name: data
      emptyDir: {}
    {{- if $root.Values.tls.existingSecret }}
    - name: tls
      secret:
        secretName: {{ $root.Values.tls.existingSecret }}
    {{- end }}
    {{- range $index, $domain := keys $root.Values.tls.hosts | sortAlpha }}
    - name: host-tls-{{ $index }}
      secret:
        secretName: {{ get $root.Values.tls.hosts $domain }}
    {{- end }}
    {{- if $root.Values.credentials.existingSecret }}
    - name: credentials
      secret:
        secretName: {{ $root.Values.credentials.existingSecret }}
        defaultMode: 0400
    {{- end }}
{{- end -}}
