"""Delivery metrics from the run history: how often the fleet changes, how often a change fails, how fast it heals."""
