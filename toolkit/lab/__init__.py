"""The lab: podman containers that boot systemd and sshd, used as real hosts (docs/lab.md).

Nothing here prints: functions return data or raise LabError; toolkit/cli/lab.py shows them.
"""
