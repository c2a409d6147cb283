"""Prometheus metrics toolkit writes for node_exporter's textfile collector (drift results, converges)."""
