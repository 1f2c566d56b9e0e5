"""Watching the service: Prometheus metrics, optional tracing, audit export (README)."""
