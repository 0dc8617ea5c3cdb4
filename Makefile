# The two ways in: `make run` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
URL ?= http://127.0.0.1:8000
TOKEN ?=

# How .venv is set up (once, and again whenever pyproject.toml or a lock file changes):
#   default   pip resolves pyproject.toml's ranges, newest releases first; no lock is needed.
#             This is what `make run` and a newcomer's `make test` do.
#   LOCKED=1  exactly requirements-dev.lock, every file checked against its sha256 hashes
#             (--require-hashes), then the project itself, editable, with --no-deps and
#             --no-build-isolation (its build backend, setuptools and wheel, is in that lock
#             too), so nothing unlocked is installed. CI sets it (.ci/run); `make test LOCKED=1`
#             runs the tests with CI's exact versions. pip is not upgraded in this mode.
# requirements.lock (runtime only) is what the Docker image installs; `make lock` regenerates
# both from pyproject.toml.
LOCKED ?=
LOCKS := $(wildcard requirements.lock requirements-dev.lock)
STAMP := $(VENV)/.installed-$(if $(LOCKED),locked-)$(shell cat pyproject.toml $(LOCKS) | cksum | cut -d' ' -f1)

.PHONY: venv run test lint typecheck lock openapi openapi-check contract bench faults clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCKS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
ifeq ($(LOCKED),)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
else
	@$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	@$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
endif
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
	@echo "Webhooks to http:// and 127.0.0.1 are allowed here (development only; see the README)."
	@echo
	REFERRAL_ENV=development REFERRAL_WEBHOOK_ALLOW_INSECURE=true $(BIN)/referral-service serve

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

# The fault suite (tests/faults/): kill -9 of the whole server under intake, PostgreSQL and
# Redis unreachable under load (through TCP proxies it controls; the servers themselves are
# never stopped). One line of figures per part; exits non-zero on any loss. Under five minutes;
# needs PostgreSQL (REFERRAL_TEST_DATABASE_URL, else 127.0.0.1:5432) and Redis (127.0.0.1:6379).
faults: $(STAMP)
	$(BIN)/python -m tests.faults

# Regenerate requirements.lock (runtime) and requirements-dev.lock (runtime + dev extra + build
# backend) with sha256 hashes of every published file of each pinned release, so the same
# locks install on amd64 and arm64. Run it after changing a dependency in pyproject.toml, and
# commit both files. Existing pins are kept where they still fit; `make lock UPGRADE=1` moves
# everything to the newest releases. The dev lock is constrained by the runtime lock, so the
# image and CI run the same runtime versions. pip-tools runs from a throwaway virtualenv, and
# this machine's pip configuration (local wheel folders, extra indexes) is ignored, so the
# hashes are the index's own. The locks are for Python 3.11 on Linux, the image's Python.
LOCK_TOOLS := pip==26.3 pip-tools==7.6.2
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
	CUSTOM_COMPILE_COMMAND="make lock"
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	--no-emit-find-links $(if $(UPGRADE),--upgrade)

lock:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "make lock: the locks are for Python 3.11: make lock PYTHON=python3.11"; exit 2; }
	@tools="$$(mktemp -d)" && trap 'rm -rf "$$tools"' EXIT \
		&& $(PYTHON) -m venv "$$tools" \
		&& $(LOCK_ENV) "$$tools/bin/python" -m pip install --quiet $(LOCK_TOOLS) \
		&& $(LOCK_ENV) "$$tools/bin/pip-compile" $(LOCK_FLAGS) \
			--output-file requirements.lock pyproject.toml \
		&& $(LOCK_ENV) "$$tools/bin/pip-compile" $(LOCK_FLAGS) --extra dev \
			--build-deps-for editable --constraint requirements.lock \
			--output-file requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
