"""The runner layer: everything that talks to ansible-runner, and what it records.

It never imports the CLI or the console: callers pass an observer for events and get a RunResult
back. Exit codes are decided here, in one place (result.py).
"""
