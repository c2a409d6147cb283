"""Alert-driven remediation: Event-Driven Ansible's rulebook (rulebooks/heal.yml), served by `toolkit heal`."""
