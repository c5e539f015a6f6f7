# Every task a person runs. `make test` is what CI runs (.ci/run) and installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
# One target dir for the workspace, the functions and every tool that builds them.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: help test lint fmt fmt-check clippy unit build sim venv bench

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

test: fmt-check clippy unit ## Everything CI checks: formatting, clippy -D warnings, all tests

lint: fmt-check clippy ## Formatting and clippy only

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Runs every test with a moto server up, then prints one closing line with the totals.
unit: venv
	@mkdir -p $(CARGO_TARGET_DIR)
	@set -o pipefail; VENV=$(VENV) tests/with-moto.sh $(CARGO) test --workspace --all-targets --locked 2>&1 \
		| tee $(CARGO_TARGET_DIR)/test-output.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
		$(CARGO_TARGET_DIR)/test-output.log

venv: $(VENV)/.installed ## Python tools (moto, cargo-lambda) in .venv

$(VENV)/.installed: tests/requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "python3 is missing: install Python 3.9+ (apt-get install python3 python3-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@touch $@

build: ## Build every crate (debug)
	$(CARGO) build --workspace --locked

bench: ## Proxy overhead, throughput and Secrets Manager reads (prints figures)
	$(CARGO) run --locked --profile perf -p broker-tests --bin bench-proxy

sim: ## Run the RingCX simulator on 127.0.0.1:8900
	$(CARGO) run --locked -p broker-tests --bin ringcx-sim -- --bind 127.0.0.1:8900
