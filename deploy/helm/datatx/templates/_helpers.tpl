{{/* Names and labels shared by every template. */}}
{{- define "datatx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "datatx.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: datatx
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "datatx.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "datatx.serviceAccount" -}}
{{- printf "%s-%s" (include "datatx.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The one image of operator, bridge and mover; a digest wins over the tag. */}}
{{- define "datatx.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The bridge's Service name, and the URL invitees use unless publicBaseUrl says otherwise. */}}
{{- define "datatx.bridgeService" -}}
{{- include "datatx.serviceAccount" (dict "root" . "component" "bridge") -}}
{{- end -}}

{{- define "datatx.bridgeBaseUrl" -}}
{{- if .Values.bridge.publicBaseUrl -}}
{{- .Values.bridge.publicBaseUrl -}}
{{- else -}}
{{- $scheme := ternary "https" "http" (ne .Values.bridge.tls.secretName "") -}}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "datatx.bridgeService" .) .Release.Namespace (int .Values.bridge.httpPort) -}}
{{- end -}}
{{- end -}}

{{/* One Secret key as a read-only file: the volume (`volume`) and its mount (`mount`). */}}
{{- define "datatx.secretFileVolume" -}}
- name: {{ .volume }}
  secret:
    secretName: {{ .ref.name }}
    defaultMode: 0440
    items:
      - key: {{ .ref.key }}
        path: {{ .file }}
{{- end -}}

{{- define "datatx.secretFileMount" -}}
- name: {{ .volume }}
  mountPath: /etc/datatx/{{ .volume }}
  readOnly: true
{{- end -}}

{{/* Pod spec parts every workload of the chart shares. */}}
{{- define "datatx.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
