{{/* Names: <release>-vigil, or the release name when it already says vigil. */}}
{{- define "vigil.fullname" -}}
{{- if contains "vigil" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-vigil" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vigil.componentName" -}}
{{- printf "%s-%s" (include "vigil.fullname" .root) .component -}}
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels of the chart's objects that belong to no single component. */}}
{{- define "vigil.commonLabels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The environment every component shares: identity, logging, metrics and Kafka. Secrets are files (the *_FILE
settings), never variables. Call with (dict "root" $ "component" "name" "extra" .Values.<component>.env).
*/}}
{{- define "vigil.env" -}}
{{- $v := .root.Values -}}
- name: VIGIL_CLUSTER
  value: {{ $v.cluster | quote }}
- name: VIGIL_NODE
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: VIGIL_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: VIGIL_DATA_DIR
  value: /var/lib/vigil
- name: VIGIL_METRICS_HOST
  value: 0.0.0.0
- name: VIGIL_METRICS_PORT
  value: {{ $v.metrics.port | quote }}
- name: VIGIL_KAFKA_BOOTSTRAP
  value: {{ $v.kafka.bootstrap | quote }}
- name: VIGIL_KAFKA_TOPIC_PREFIX
  value: {{ $v.kafka.topicPrefix | quote }}
- name: VIGIL_KAFKA_REPLICATION_FACTOR
  value: {{ $v.kafka.replicationFactor | quote }}
- name: VIGIL_KAFKA_MIN_INSYNC_REPLICAS
  value: {{ $v.kafka.minInsyncReplicas | quote }}
- name: VIGIL_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $v.kafka.securityProtocol }}
- name: VIGIL_KAFKA_SASL_MECHANISM
  value: {{ $v.kafka.sasl.mechanism | quote }}
- name: VIGIL_KAFKA_SASL_USERNAME
  value: {{ required "kafka.sasl.username is required with a SASL security protocol" $v.kafka.sasl.username | quote }}
- name: VIGIL_KAFKA_SASL_PASSWORD_FILE
  value: /etc/vigil/kafka-sasl/{{ $v.kafka.sasl.passwordKey }}
{{- end }}
{{- if $v.kafka.tls.existingSecret }}
- name: VIGIL_KAFKA_SSL_CAFILE
  value: /etc/vigil/kafka-tls/{{ $v.kafka.tls.caKey }}
{{- if $v.kafka.tls.certKey }}
- name: VIGIL_KAFKA_SSL_CERTFILE
  value: /etc/vigil/kafka-tls/{{ $v.kafka.tls.certKey }}
- name: VIGIL_KAFKA_SSL_KEYFILE
  value: /etc/vigil/kafka-tls/{{ required "kafka.tls.keyKey is required with kafka.tls.certKey" $v.kafka.tls.keyKey }}
{{- end }}
{{- end }}
{{- range $name, $value := .extra }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Volumes for the Kafka credentials (SASL password, TLS trust), when configured. */}}
{{- define "vigil.kafkaVolumes" -}}
{{- $kafka := .Values.kafka -}}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
- name: kafka-sasl
  secret:
    secretName: {{ required "kafka.sasl.existingSecret is required with a SASL security protocol" $kafka.sasl.existingSecret }}
    items:
      - key: {{ $kafka.sasl.passwordKey }}
        path: {{ $kafka.sasl.passwordKey }}
{{- end }}
{{- if $kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $kafka.tls.existingSecret }}
{{- end }}
{{- end -}}

{{- define "vigil.kafkaVolumeMounts" -}}
{{- $kafka := .Values.kafka -}}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
- name: kafka-sasl
  mountPath: /etc/vigil/kafka-sasl
  readOnly: true
{{- end }}
{{- if $kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/vigil/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Checks on values that would otherwise fail at run time. */}}
{{- define "vigil.validate" -}}
{{- if not (has .Values.kafka.securityProtocol (list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL")) -}}
{{- fail (printf "kafka.securityProtocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, not %s" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if gt (int .Values.streamWorker.replicas) (int .Values.kafka.rawTopicPartitions) -}}
{{- fail (printf "streamWorker.replicas (%d) exceeds kafka.rawTopicPartitions (%d): the extra workers would get no partition" (int .Values.streamWorker.replicas) (int .Values.kafka.rawTopicPartitions)) -}}
{{- end -}}
{{- if and .Values.detections.existingConfigMap .Values.detections.custom -}}
{{- fail "set detections.custom or detections.existingConfigMap, not both" -}}
{{- end -}}
{{- end -}}

{{/* The probes of the components serving /metrics on the metrics port. */}}
{{- define "vigil.metricsProbes" -}}
startupProbe:
  httpGet:
    path: /metrics
    port: metrics
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /metrics
    port: metrics
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
