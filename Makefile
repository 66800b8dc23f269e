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
	.venv/bin/lint-imports --no-cache

setup:
	scripts/setup.sh
