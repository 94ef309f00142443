"""What a server reports: Prometheus metrics, OpenTelemetry spans, JSON log lines, drift."""
