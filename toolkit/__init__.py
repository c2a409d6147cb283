"""toolkit: config management for Cassandra, PostgreSQL and Prometheus fleets over ansible-runner."""

__version__ = "0.1.0"
