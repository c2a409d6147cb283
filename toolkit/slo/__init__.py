"""Service level objectives: slos.yml, the figures Prometheus records for them, and the budget gate."""
