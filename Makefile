# The two Quick start commands, and the checks behind "done".
.PHONY: run test lint setup

run:
	scripts/setup.sh
	.venv/bin/callcenter serve

test:
	scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check callcenter webhooks
	.venv/bin/mypy

setup:
	scripts/setup.sh
