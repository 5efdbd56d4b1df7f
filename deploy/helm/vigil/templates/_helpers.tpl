{{- define "vigil.name" -}}{{ .Release.Name }}-vigil{{- end -}}

{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "vigil.selector" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The settings every Vigil container reads, and its own Redis URL and Kafka user from the Secret. */}}
{{- define "vigil.env" -}}
- name: VIGIL_KAFKA_BOOTSTRAP
  value: {{ .root.Values.kafka.bootstrap | quote }}
- name: VIGIL_KAFKA_SECURITY_PROTOCOL
  value: {{ .root.Values.kafka.securityProtocol | quote }}
- name: VIGIL_KAFKA_SASL_MECHANISM
  value: {{ .root.Values.kafka.saslMechanism | quote }}
- name: VIGIL_TOPIC_PARTITIONS
  value: {{ .root.Values.kafka.partitions | quote }}
- name: VIGIL_REVIEW_URL
  value: {{ .root.Values.review.url | quote }}
{{- range $name, $value := .root.Values.settings }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
- name: VIGIL_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.existingSecret }}, key: redis-url-{{ .component }}}
{{- if ne .component "gate" }}
- name: VIGIL_KAFKA_USERNAME
  value: vigil-{{ .component }}
- name: VIGIL_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .root.Values.existingSecret }}, key: kafka-password-{{ .component }}}
- name: VIGIL_INCIDENTS_FILE
  value: /etc/vigil/incidents.toml
{{- end }}
{{- end -}}

{{- define "vigil.incidentsVolume" -}}
- name: incidents
  secret:
    secretName: {{ .Values.existingSecret }}
    items: [{key: incidents.toml, path: incidents.toml}]
{{- end -}}

{{- define "vigil.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: false
capabilities: {drop: [ALL]}
{{- end -}}
