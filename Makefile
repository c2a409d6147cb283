# The README's two commands are `make lab` and `make test`; everything else is a convenience.
.PHONY: setup lab test test-lint test-unit test-roles test-lab lab-down

setup:
	scripts/setup

# Sets up everything, then the main job on the local lab: hosts up, the baseline, the Cassandra release
# (built once, cached), then `toolkit converge cassandra` on the three Cassandra hosts, and verify both.
lab: setup
	.venv/bin/toolkit lab up
	.venv/bin/toolkit converge base
	.venv/bin/toolkit artifact cassandra
	.venv/bin/toolkit converge cassandra
	.venv/bin/toolkit verify base
	.venv/bin/toolkit verify cassandra

lab-down:
	.venv/bin/toolkit lab down

# The whole suite, every layer (what CI runs).
test:
	scripts/test all

test-lint:
	scripts/test lint
test-unit:
	scripts/test unit
test-roles:
	scripts/test roles
test-lab:
	scripts/test lab
