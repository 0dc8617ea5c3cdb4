# The two ways in: `make run` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
URL ?= http://127.0.0.1:8000
TOKEN ?=

.PHONY: run test lint typecheck openapi openapi-check contract bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

# The contract tests' npm tools (Spectral, openapi-typescript, tsc), exactly as locked; installed
# again only when the lock file changes.
NPM_DIR := tests/contract/clients
NPM_STAMP := $(NPM_DIR)/node_modules/.installed-$(shell cksum $(NPM_DIR)/package-lock.json | cut -d' ' -f1)

$(NPM_STAMP): $(NPM_DIR)/package-lock.json
	@cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@rm -f $(NPM_DIR)/node_modules/.installed-* && touch $@

run: $(STAMP)
	@mkdir -p var
	@REFERRAL_ENV=development $(BIN)/referral-service dev-token --org RX1 \
		--scope "referrals:submit referrals:read audit:read" --ttl 86400 > var/dev-token
	@$(BIN)/referral-service example-referral > var/example-referral.json
	@echo
	@echo "Development token (org RX1, 24 h; the key pair is in var/dev-keys/):"
	@echo
	@cat var/dev-token
	@echo
	@echo "Submit a first referral:"
	@echo
	@echo "  curl -s -X POST $(URL)/v1/referrals \\"
	@echo "    -H \"Authorization: Bearer \$$(cat var/dev-token)\" \\"
	@echo "    -H 'Content-Type: application/json' -d @var/example-referral.json"
	@echo
	REFERRAL_ENV=development $(BIN)/referral-service serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(NPM_STAMP) lint typecheck
	$(BIN)/pytest

openapi: $(STAMP)
	$(BIN)/python -m api.openapi_export openapi/openapi.json

openapi-check: $(STAMP)
	$(BIN)/python -m api.openapi_export --check openapi/openapi.json

contract: $(STAMP)
	@test -n "$(TOKEN)" || { echo "usage: make contract URL=https://… TOKEN=… (a test" \
		"organisation's token: referrals:submit referrals:read audit:read)"; exit 2; }
	$(BIN)/schemathesis --config-file tests/contract/schemathesis.toml run openapi/openapi.json \
		--url "$(URL)" --header "Authorization: Bearer $(TOKEN)" \
		--checks all --phases examples,coverage,fuzzing,stateful

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
