"""Environments on demand: one spec (environments/NAME.yml), brought up in the lab or on AWS (docs/environments.md)."""
