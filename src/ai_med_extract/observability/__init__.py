"""Logs, correlation ids and Prometheus metrics."""
