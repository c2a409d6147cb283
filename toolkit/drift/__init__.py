"""Drift detection: the report, its history, its metrics and its schedule."""
