# Every task a person runs. `make test` is what CI runs (.ci/run) and installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
# One target dir for the workspace, the functions and every tool that builds them.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: help test lint fmt fmt-check clippy unit build sim

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

unit:
	$(CARGO) test --workspace --all-targets --locked

build: ## Build every crate (debug)
	$(CARGO) build --workspace --locked

sim: ## Run the RingCX simulator on 127.0.0.1:8900
	$(CARGO) run --locked -p broker-tests --bin ringcx-sim -- --bind 127.0.0.1:8900
